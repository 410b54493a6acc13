"""Reading user-chosen files safely: paths, validation, schema state, browsing."""
