/* Exports no smlp_plugin_init (only an unrelated symbol). */
__attribute__((visibility("default"))) int smlp_test_not_an_entry = 1;
