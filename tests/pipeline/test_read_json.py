"""Reading the JSON files sepconv writes (recorded reports, conversion manifests): one reader, one-line
errors that name the file and what it should have been."""

from __future__ import annotations

import pytest

from sepconv_cli.errors import InputError
from sepconv_cli.pipeline.report_file import read_json
from sepconv_cli.pipeline.restore import read_manifest


def test_read_json_returns_the_document(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"kind": "x", "layers": []}')
    assert read_json(str(path)) == {"kind": "x", "layers": []}


@pytest.mark.parametrize("what, missing, broken", [
    ("", "cannot read (", "not JSON ("),
    ("manifest", "cannot read manifest (", "manifest is not JSON ("),
])
def test_errors_name_the_file_and_what_it_should_be(tmp_path, what, missing, broken):
    with pytest.raises(InputError, match=rf"nothing\.json: {missing.replace('(', '[(]')}"):
        read_json(str(tmp_path / "nothing.json"), what)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{not json\xff")
    with pytest.raises(InputError, match=rf"bad\.json: {broken.replace('(', '[(]')}"):
        read_json(str(bad), what)


def test_a_manifest_must_say_what_it_is(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"kind": "something else", "layers": []}')
    with pytest.raises(InputError, match="not a sepconv convert manifest"):
        read_manifest(str(path))
    with pytest.raises(InputError, match="manifest is not JSON"):
        path.write_text("[")
        read_manifest(str(path))
