"""The torch-free contract shared by the API, the worker and the engine.

Everything here imports the standard library and pydantic only (pyyaml too, when a spec file
is read), so the API process can use it without torch:

- `states`: job states and running phases;
- `layout`: artifact and checkpoint file names, `sha256_file`;
- `jsonsafe`: the NaN-to-null JSON cleaner;
- `version`: SPEC_VERSION and RUN_STATE_VERSION;
- `errors`: the one list of error codes (`ErrorCode`) and the root exception `AdapruneError`;
- `entrypoints`: the entry-point allow-list (`EntrypointAllowList`, explicit `allow_any`);
- `specfile`: reading a spec file, pydantic errors as one line;
- `records`: the typed `StepRecord`, `JobResult` and `Manifest`.
"""
