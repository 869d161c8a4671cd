"""The torch-free contract shared by the API, the worker and the engine.

Everything here imports the standard library and pydantic only, so the API process can use it
without torch: job states and phases, the artifact and checkpoint layout, the JSON cleaner, the
spec version, the error codes and the typed records that cross process boundaries.
"""
