"""one_line: every error message is one printable line of at most MAX_MESSAGE characters, whatever the
text it quotes (control characters escaped, the middle of long ones cut), and a huge quoted text costs
no more than a short one (only its ends are escaped)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from sepconv_cli.errors import MAX_MESSAGE, InputError, one_line


def _reference(text: str, limit: int = MAX_MESSAGE) -> str:
    """The definition: escape everything, then cut the middle."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: repr(m.group())[1:-1], text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= limit:
        return text
    keep = limit - 5
    return f"{text[:keep - keep // 3]} ... {text[len(text) - keep // 3:]}"


@given(st.text(alphabet=st.sampled_from("ab\x00\n\x1b\x9f\u00e9\udcff "), max_size=3000))
def test_one_line_is_the_escaped_text_with_its_middle_cut(text):
    assert one_line(text) == _reference(text)


def test_a_message_quoting_64_mib_of_nul_bytes_is_one_short_line():
    text = "Saved archive version " + "\0" * (64 * 2**20) + " does not match"
    line = one_line(text)
    assert line == _reference("Saved archive version " + "\0" * 4000 + " does not match")
    assert len(line) <= MAX_MESSAGE and "\n" not in line and line.endswith(" does not match")
    assert str(InputError(text)) == line
