"""Work that spans components: the local run, model bootstraps, backfills, promotion."""
