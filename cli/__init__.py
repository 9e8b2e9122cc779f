"""embstore's command line (installed as the import package ``embstore_cli``): thin click commands over
``embstore.Store``. Library errors become one-line messages and exit code 2."""
