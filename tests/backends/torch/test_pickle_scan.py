"""Static pickle and ``.pt2`` inspection: every poisoned archive is found, clean ones pass, and the
poisons are real (torch's own loader runs them when nothing inspects the archive first)."""

from __future__ import annotations

import io
import logging
import os
import pickle
import pickletools
import warnings
from collections import OrderedDict

import pytest
import torch
from pt2_poison import VARIANTS, Payload, ShellPayload, clean_archive

from sepconv_cli.backends.torch.pickle_scan import torch_save_findings, unsafe_names
from sepconv_cli.backends.torch.pt2_scan import expression_ok, scan_pt2

# Variants whose payload torch.export.load (or calling the loaded module) runs in this torch release.
LIVE = ("pickled_weight", "opaque_constant", "sample_inputs", "legacy_weights", "shape_expression",
        "generated_code_name")


@pytest.fixture(scope="module")
def clean() -> bytes:
    return clean_archive(dynamic=True)


def _write(folder, name: str, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def test_clean_archives_and_state_dicts_pass(tmp_path, clean):
    assert scan_pt2(_write(tmp_path, "dyn.pt2", clean)) is None
    assert scan_pt2(_write(tmp_path, "static.pt2", clean_archive())) is None
    buffer = io.BytesIO()
    torch.save(OrderedDict(w=torch.ones(3), n=torch.tensor(2, dtype=torch.int64)), buffer)
    assert torch_save_findings(buffer.getvalue()) == []
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer, _use_new_zipfile_serialization=False)  # legacy format
    assert torch_save_findings(buffer.getvalue()) == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_poisoned_archive_is_found_without_running_it(tmp_path, clean, variant):
    marker = str(tmp_path / "marker")
    path = _write(tmp_path, "evil.pt2", VARIANTS[variant](clean, marker))
    finding = scan_pt2(path)
    assert finding is not None and finding.needs_trust
    assert finding.member and finding.reason
    assert not os.path.exists(marker)


@pytest.mark.parametrize("variant", LIVE)
def test_the_poisons_are_live_without_inspection(tmp_path, clean, variant):
    """Torch itself runs these payloads: the refusals above are what keeps them from running."""
    marker = str(tmp_path / "marker")
    path = _write(tmp_path, "evil.pt2", VARIANTS[variant](clean, marker))
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.export.load(path).module()(torch.randn(2, 3, 8, 8))
    except Exception:  # noqa: BLE001 - most poisoned archives fail to load after the payload ran
        pass
    finally:
        logging.disable(logging.NOTSET)
    assert os.path.exists(marker)


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_imports_are_found_at_every_protocol(protocol):
    data = pickle.dumps(ShellPayload("/nonexistent/marker"), protocol=protocol)
    assert unsafe_names(data) == [f"{os.system.__module__}.system"]
    assert unsafe_names(pickle.dumps(Payload("/nonexistent/marker"), protocol=protocol)) == ["builtins.exec"]


def test_stack_global_over_memoised_strings_is_resolved():
    """Protocol 4 pushes module and name as strings (memoised, fetched again) before STACK_GLOBAL."""
    data = pickletools.optimize(pickle.dumps([os.getcwd, os.getcwd, Payload("m")], protocol=4))
    assert set(unsafe_names(data)) == {"posix.getcwd", "builtins.exec"}


def test_unknowable_names_count_as_unsafe():
    # STACK_GLOBAL over values that are not plain strings (here: an empty tuple and a list)
    computed = b"\x80\x04)]\x93."
    assert unsafe_names(computed) == ["<computed name>"]
    ext = b"\x80\x02\x82\x01."  # EXT1 code 1: the copyreg extension registry
    assert unsafe_names(ext) == ["<extension code 1>"]
    inst = b"(ios\nsystem\nS'true'\n."  # protocol 0 INST
    assert unsafe_names(inst) == ["posix.system"] or unsafe_names(inst) == ["os.system"]


def test_opcodes_before_a_broken_byte_still_count():
    data = pickle.dumps(Payload("m"), protocol=2)[:-1] + b"\xff"  # STOP replaced by an invalid opcode
    assert unsafe_names(data) == ["builtins.exec"]


def test_torchscript_inside_an_archive_is_refused():
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    assert "TorchScript" in torch_save_findings(buffer.getvalue())[0]


@pytest.mark.parametrize("text", [
    "Symbol('s77', positive=True, integer=True)",
    "FloorDiv(Symbol('s17', positive=True, integer=True), Integer(2))",
    "s0*s1 + 2", "Max(1, s0) // 2", "Eq(Mod(s0, 2), 0)", "1.5e-3*s2",
])
def test_shape_expressions_torch_writes_are_accepted(text):
    assert expression_ok(text)


@pytest.mark.parametrize("text", [
    "exec(chr(112)+chr(114))", "__import__('os')", "Symbol('s0').__class__", "S('eval')",
    "Symbol('a b')", "lambda: 0", "eval", "s0; s1", "Symbol(f's0')", "getattr(s0, 'x')",
])
def test_shape_expressions_that_could_run_code_are_refused(text):
    assert not expression_ok(text)
