"""Running the whole stack locally: embedded services, migrations, the process supervisor, the CLI."""
