import shutil

import pytest

from service.storage import FileStorage
from workers.checkpoints import storage_call
from workers.errors import StorageUnavailable


def test_a_write_whose_storage_directory_vanished_is_a_storage_outage(tmp_path):
    storage = FileStorage(tmp_path / "root")
    source = tmp_path / "w.bin"
    source.write_bytes(b"x" * 10)

    def put_after_the_root_vanished(key, path):
        storage.put_file(key, path)
        shutil.rmtree(tmp_path / "root")
        # what a write sees when its directory disappears under it
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "root" / key))

    with pytest.raises(StorageUnavailable, match="upload a/b: storage location vanished"):
        storage_call("upload a/b", put_after_the_root_vanished, "a/b", source)


def test_a_read_of_a_missing_object_still_says_missing(tmp_path):
    storage = FileStorage(tmp_path / "root")
    with pytest.raises(FileNotFoundError):
        storage_call("read x", storage.get_file, "a/x", tmp_path / "x", reading=True)
