"""Byte amounts: one parser for every size and rate option, with binary suffixes and exact fractions."""

from __future__ import annotations

import pytest

from downloader.amounts import MAX_AMOUNT, parse_amount
from downloader.cli import build_parser


@pytest.mark.parametrize(("text", "expected"), [
    ("100", 100),
    ("0", 0),
    ("500k", 512_000),
    ("500K", 512_000),
    ("20M", 20_971_520),
    ("1.5m", 1_572_864),
    ("2g", 2 * 1024**3),
    ("1T", 1024**4),
    ("1.5t", 3 * 1024**4 // 2),
    ("0.5k", 512),
    (".5k", 512),
    ("  64k ", 65_536),
    ("+1k", 1024),
    ("0.1", 0),
    ("2.5", 2),  # to the nearest byte, half to even
    ("9007199254740993", 2**53 + 1),  # a float would say 2**53
    ("8388607.999999999999T", MAX_AMOUNT),
], ids=lambda value: repr(value) if isinstance(value, str) else None)
def test_parse_amount(text: str, expected: int) -> None:
    """A number with an optional binary suffix (any case, T included) is that many bytes, computed exactly."""
    assert expected == parse_amount(text)


@pytest.mark.parametrize(("text", "message"), [
    ("", "expected a number of bytes"),
    ("fast", "expected a number of bytes"),
    ("k", "expected a number of bytes"),
    ("5x", "expected a number of bytes"),
    ("5kb", "expected a number of bytes"),
    ("1P", "expected a number of bytes"),
    ("1e3", "expected a number of bytes"),
    ("1.2.3", "expected a number of bytes"),
    ("nan", "expected a number of bytes"),
    ("inf", "expected a number of bytes"),
    ("-5k", "cannot be negative"),
    ("8388608T", "more than 9223372036854775807 bytes"),
], ids=repr)
def test_parse_amount_rejects(text: str, message: str) -> None:
    """Junk, a negative amount and one past 2**63 - 1 are refused with the value quoted and the reason."""
    with pytest.raises(ValueError, match=message) as raised:
        parse_amount(text)

    assert repr(text) in str(raised.value)


def test_parse_amount_minimum() -> None:
    """An amount under the option's minimum is refused, with that minimum in the message."""
    with pytest.raises(ValueError, match=r"invalid amount '0\.1': must be at least 1"):
        parse_amount("0.1", minimum=1)


@pytest.mark.parametrize(("option", "field"), [
    ("--limit-rate", "limit_rate"),
    ("--max-filesize", "max_filesize"),
    ("--min-split-size", "min_split_size"),
    ("--speed-limit", "speed_limit"),
])
def test_every_amount_option_takes_the_same_suffixes(option: str, field: str) -> None:
    """--limit-rate, --max-filesize, --min-split-size and --speed-limit all read 1T, 1.5k and 20m alike."""
    parser = build_parser()

    values = [getattr(parser.parse_args([option, text, "http://h/"]), field) for text in ("1T", "1.5k", "20m")]

    assert [1024**4, 1536, 20 * 1024**2] == values


@pytest.mark.parametrize(("argv", "message"), [
    (["--limit-rate", "0"], "argument --limit-rate: invalid amount '0': must be at least 1"),
    (["--min-split-size", "0"], "argument --min-split-size: invalid amount '0': must be at least 1"),
    (["--max-filesize", "5x"], "argument --max-filesize: invalid amount '5x': expected a number of bytes"),
    (["--speed-limit", "-1"], "argument --speed-limit: invalid amount '-1': cannot be negative"),
])
def test_a_bad_amount_is_a_usage_error_naming_option_and_value(argv: list[str], message: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A bad amount exits 2 with argparse's 'argument OPTION:' and the parser's reason."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, "http://h/"])

    assert 2 == exit_.value.code
    assert message in capsys.readouterr().err
