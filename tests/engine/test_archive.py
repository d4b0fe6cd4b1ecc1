"""Malicious zips are refused before a single member is written."""

import zipfile

import pytest

from tests.engine import models as m
from workers.engine.archive import check_archive, safe_extract
from workers.engine.errors import ArchiveError, FormatError


def _nothing_written(dest):
    return not dest.exists() or not any(dest.iterdir())


@pytest.mark.parametrize(
    "name, message",
    [
        ("../evil.txt", "climbs out"),
        ("ok/../../evil.txt", "climbs out"),
        ("/etc/evil", "absolute path"),
        ("C:/evil", "absolute path"),
        ("..\\evil.txt", "climbs out"),
    ],
)
def test_escaping_member_names_are_refused(tmp_path, name, message):
    path = m.make_zip(tmp_path / "a.zip", {"config.json": b"{}", name: b"pwned"})
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match=message):
        safe_extract(path, dest)
    assert _nothing_written(dest)
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_member_is_refused(tmp_path):
    path = m.make_zip(tmp_path / "a.zip", {"config.json": b"{}"}, symlinks={"model.safetensors": "/etc/passwd"})
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match="symbolic link"):
        safe_extract(path, dest)
    assert _nothing_written(dest)


def test_too_many_members(tmp_path):
    path = m.make_zip(tmp_path / "a.zip", {f"f{i}.txt": b"x" for i in range(20)})
    with pytest.raises(ArchiveError, match="20 members"):
        check_archive(path, max_members=10)
    assert len(check_archive(path, max_members=20)) == 20


def test_too_large_uncompressed(tmp_path):
    path = m.make_zip(tmp_path / "a.zip", {"a.bin": b"\x01" * 5000, "b.bin": b"\x02" * 5000})
    with pytest.raises(ArchiveError, match="more than 8000 bytes"):
        check_archive(path, max_total_bytes=8000)


def test_zip_bomb_ratio(tmp_path):
    path = m.make_zip(tmp_path / "bomb.zip", {"model.safetensors": b"\x00" * (8 * 1024 * 1024)})
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match="zip bomb"):
        safe_extract(path, dest)
    assert _nothing_written(dest)


def test_caps_come_from_environment(tmp_path, monkeypatch):
    path = m.make_zip(tmp_path / "a.zip", {f"f{i}.txt": b"x" for i in range(5)})
    monkeypatch.setenv("AUDIT_ARCHIVE_MAX_MEMBERS", "3")
    with pytest.raises(ArchiveError, match="at most 3"):
        check_archive(path)


def test_member_larger_than_declared_is_stopped(tmp_path):
    path = m.make_zip(tmp_path / "a.zip", {"big.bin": b"A" * 4096}, compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    # Shrink the declared size in the central directory only; the real bytes stay 4096.
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises((ArchiveError, zipfile.BadZipFile)):
        safe_extract(path, tmp_path / "out")


def test_not_a_zip(tmp_path):
    path = tmp_path / "a.zip"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(FormatError, match="not a readable zip"):
        check_archive(path)


def test_good_archive_extracts(tmp_path, bert_zip):
    dest = safe_extract(bert_zip, tmp_path / "out")
    assert (dest / "my-bert" / "config.json").is_file()
    assert (dest / "my-bert" / "model.safetensors").is_file()


def test_duplicate_member_is_refused(tmp_path):
    import warnings

    path = tmp_path / "dup.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
        warnings.simplefilter("ignore")
        zf.writestr("config.json", b"{}")
        zf.writestr("config.json", b'{"evil": true}')
    with pytest.raises(ArchiveError, match="appears twice"):
        safe_extract(path, tmp_path / "out")


@pytest.mark.parametrize(
    "mode, message",
    [
        (0o010644, "is a FIFO"),
        (0o020644, "is a character device"),
        (0o060644, "is a block device"),
        (0o140644, "is a socket"),
        (0o104755, "is marked setuid"),
        (0o102755, "is marked setgid"),
        (0o041777, "is marked sticky"),
        (0o106755, "is marked setuid/setgid"),
    ],
    ids=["fifo", "chardev", "blockdev", "socket", "setuid", "setgid", "sticky-dir", "setuid-setgid"],
)
def test_special_file_modes_are_refused(tmp_path, mode, message):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", b"{}")
        info = zipfile.ZipInfo("model.safetensors")
        info.external_attr = mode << 16
        zf.writestr(info, b"x")
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match=f"'model.safetensors' {message}"):
        safe_extract(path, dest)
    assert _nothing_written(dest)


def test_ordinary_modes_are_accepted(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, mode in (("m/", 0o040755), ("m/config.json", 0o100644), ("m/run.sh", 0o100755), ("m/w.bin", 0)):
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, b"" if name.endswith("/") else b"x")
    assert len(check_archive(path)) == 4
