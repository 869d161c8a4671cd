"""The adaprune command line and the embedded local stack (`adaprune up`)."""
