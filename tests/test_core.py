"""Unit tests for downloader.core: the sans-I/O protocol decisions (RFC 9110 §13.1.5, §14, §15)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from requests.structures import CaseInsensitiveDict

from downloader.core import (
    RETRYABLE_STATUSES,
    Action,
    Decision,
    Request,
    RequestOptions,
    ResumeState,
    check_complete,
    check_digest,
    follow_redirect,
    framing_fault,
    judge,
    parse_content_range,
    parse_retry_after,
    plan_request,
    with_cookie,
)
from downloader.errors import BodyIncomplete, HTTPStatusError, IntegrityError, MalformedResponse, Refused
from downloader.jobs import Job

URL = "http://example.test/data/f.bin"
UA = "downloader-tests/1"
LM = "Tue, 14 Nov 2023 22:13:20 GMT"
JOB = Job(URL)

STRONG = ResumeState(URL, '"v1"', None, 10)
STRONG_NO_SIZE = ResumeState(URL, '"v1"', None, None)
LM_ONLY = ResumeState(URL, None, LM, 10)
WEAK_AND_LM = ResumeState(URL, 'W/"v1"', LM, 10)
WEAK_ONLY = ResumeState(URL, 'W/"v1"', None, 10)
SIZE_ONLY = ResumeState(URL, None, None, 10)
NOTHING_SAVED = ResumeState(URL, None, None, None)


def headers(**fields: str) -> CaseInsensitiveDict:
    """Response headers as a case-insensitive mapping; underscores become dashes."""
    return CaseInsensitiveDict({name.replace("_", "-"): value for name, value in fields.items()})


def decide(have: int, state: ResumeState | None, status: int, answer: CaseInsensitiveDict, job: Job = JOB) -> Decision:
    """Plan the request for ``have`` bytes and judge ``status``/``answer`` against it."""
    request = plan_request(URL, have=have, state=state, user_agent=UA)
    return judge(request, status, answer, job=job, state=state)


# --- plan_request -----------------------------------------------------------------

BASE = {"Accept-Encoding": "identity", "User-Agent": UA}


@pytest.mark.parametrize(
    ("have", "state", "expected_headers", "expected_offset"),
    [
        pytest.param(0, None, BASE, 0, id="nothing-on-disk"),
        pytest.param(0, STRONG, BASE, 0, id="state-but-empty-part"),
        pytest.param(4, None, BASE, 0, id="part-without-state"),
        pytest.param(4, STRONG, {**BASE, "Range": "bytes=4-", "If-Range": '"v1"'}, 4, id="strong-etag"),
        pytest.param(4, LM_ONLY, {**BASE, "Range": "bytes=4-", "If-Range": LM}, 4, id="last-modified-only"),
        pytest.param(4, WEAK_AND_LM, {**BASE, "Range": "bytes=4-"}, 4, id="weak-etag-and-date-no-if-range"),
        pytest.param(4, WEAK_ONLY, {**BASE, "Range": "bytes=4-"}, 4, id="weak-etag-only-no-if-range"),
        pytest.param(4, SIZE_ONLY, {**BASE, "Range": "bytes=4-"}, 4, id="no-validator-no-if-range"),
        pytest.param(4, NOTHING_SAVED, {**BASE, "Range": "bytes=4-"}, 4, id="empty-state-no-if-range"),
    ],
)
def test_plan_request_headers(have, state, expected_headers, expected_offset):
    """The planned GET carries exactly the headers the resume table prescribes."""
    request = plan_request(URL, have=have, state=state, user_agent=UA)
    assert request == Request(URL, expected_headers, expected_offset, origin=URL)


def test_plan_request_never_puts_a_weak_etag_in_if_range():
    """No If-Range value starts with W/, whatever the saved state holds."""
    for state in (WEAK_AND_LM, WEAK_ONLY):
        request = plan_request(URL, have=3, state=state, user_agent=UA)
        assert not request.headers.get("If-Range", "").startswith("W/")


def test_plan_request_returns_fresh_header_dicts():
    """Two planned requests do not share one mutable headers dict."""
    first = plan_request(URL, have=0, state=None, user_agent=UA)
    second = plan_request(URL, have=0, state=None, user_agent=UA)
    first.headers["X-Test"] = "1"
    assert "X-Test" not in second.headers


# --- judge: the resume table -------------------------------------------------------

CR = "Content-Range"


@pytest.mark.parametrize(
    ("have", "state", "status", "answer", "action", "offset", "total"),
    [
        # Nothing on disk.
        pytest.param(0, None, 200, headers(Content_Length="10"), Action.WRITE, 0, 10, id="fresh-200"),
        pytest.param(0, None, 200, headers(), Action.WRITE, 0, None, id="fresh-200-no-length"),
        pytest.param(0, None, 200, headers(Content_Length=" 10 "), Action.WRITE, 0, 10, id="fresh-200-padded-length"),
        # A 206 to a request without Range: only a whole file is usable.
        pytest.param(0, None, 206, headers(Content_Range="bytes 0-9/10"), Action.WRITE, 0, 10, id="unrequested-206-whole-file"),
        pytest.param(0, None, 206, headers(Content_Range="bytes 0-4/10"), Action.RESTART, 0, None, id="unrequested-206-part-of-file"),
        pytest.param(0, None, 206, headers(Content_Range="bytes 0-9/*"), Action.RESTART, 0, None, id="unrequested-206-unknown-total"),
        # Strong ETag saved: Range + If-Range.
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 4-9/10", ETag='"v1"'), Action.WRITE, 4, 10, id="resume-206-append"),
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 4-9/10"), Action.WRITE, 4, 10, id="resume-206-without-etag"),
        pytest.param(4, STRONG, 206, headers(Content_Range="  bytes 4-9/10  "), Action.WRITE, 4, 10, id="resume-206-padded-range"),
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 0-9/10"), Action.RESTART, 0, None, id="resume-206-start-before-part"),
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 5-9/10"), Action.RESTART, 0, None, id="resume-206-start-after-part"),
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 4-8/10"), Action.RESTART, 0, None, id="resume-206-stops-short"),
        pytest.param(4, STRONG, 206, headers(), Action.RESTART, 0, None, id="resume-206-no-content-range"),
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes=4-9/10"), Action.RESTART, 0, None, id="resume-206-bad-content-range"),
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 4-11/12", ETag='"v1"'), Action.RESTART, 0, None,
                     id="resume-206-size-changed"),
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 4-9/10", ETag='"v2"'), Action.RESTART, 0, None,
                     id="resume-206-etag-changed"),
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 4-9/10", ETag='W/"v1"'), Action.RESTART, 0, None,
                     id="resume-206-weak-form-of-saved-etag"),
        pytest.param(4, STRONG, 200, headers(Content_Length="12"), Action.WRITE, 0, 12, id="resume-200-truncates"),
        pytest.param(4, STRONG_NO_SIZE, 206, headers(Content_Range="bytes 4-9/*"), Action.WRITE, 4, None,
                     id="resume-206-unknown-total-no-saved-size"),
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 4-9/*"), Action.RESTART, 0, None,
                     id="resume-206-unknown-total-with-saved-size"),
        # Last-Modified as the validator.
        pytest.param(4, LM_ONLY, 206, headers(Content_Range="bytes 4-9/10"), Action.WRITE, 4, 10, id="last-modified-206-append"),
        pytest.param(4, WEAK_AND_LM, 206, headers(Content_Range="bytes 4-9/10", ETag='W/"v1"'), Action.WRITE, 4, 10,
                     id="weak-etag-and-last-modified-206-append"),
        # No validator: only the saved size proves the same file.
        pytest.param(4, SIZE_ONLY, 206, headers(Content_Range="bytes 4-9/10"), Action.WRITE, 4, 10, id="no-validator-same-size"),
        pytest.param(4, SIZE_ONLY, 206, headers(Content_Range="bytes 4-19/20"), Action.RESTART, 0, None, id="no-validator-other-size"),
        pytest.param(4, WEAK_ONLY, 206, headers(Content_Range="bytes 4-19/20"), Action.RESTART, 0, None,
                     id="weak-etag-only-other-size"),
        pytest.param(4, NOTHING_SAVED, 206, headers(Content_Range="bytes 4-9/10"), Action.RESTART, 0, None,
                     id="no-validator-no-size"),
        pytest.param(4, SIZE_ONLY, 206, headers(Content_Range="bytes 4-9/*"), Action.RESTART, 0, None,
                     id="no-validator-unknown-total"),
        pytest.param(4, SIZE_ONLY, 200, headers(Content_Length="10"), Action.WRITE, 0, 10, id="no-validator-200-truncates"),
        # 416: complete only when the part already holds the announced size.
        pytest.param(10, STRONG, 416, headers(Content_Range="bytes */10"), Action.COMPLETE, 10, 10, id="416-part-complete"),
        pytest.param(10, STRONG_NO_SIZE, 416, headers(Content_Range="bytes */10"), Action.COMPLETE, 10, 10,
                     id="416-complete-validator-no-saved-size"),
        pytest.param(10, SIZE_ONLY, 416, headers(Content_Range="bytes */10"), Action.COMPLETE, 10, 10,
                     id="416-complete-size-proves-file"),
        pytest.param(10, LM_ONLY, 416, headers(Content_Range=" bytes */10 "), Action.COMPLETE, 10, 10, id="416-padded-header"),
        pytest.param(4, STRONG, 416, headers(Content_Range="bytes */10"), Action.RESTART, 0, None, id="416-part-shorter"),
        pytest.param(12, STRONG, 416, headers(Content_Range="bytes */10"), Action.RESTART, 0, None, id="416-part-longer"),
        pytest.param(10, STRONG, 416, headers(), Action.RESTART, 0, None, id="416-no-content-range"),
        pytest.param(10, STRONG, 416, headers(Content_Range="bytes */*"), Action.RESTART, 0, None, id="416-unknown-size"),
        pytest.param(10, ResumeState(URL, '"v1"', None, 12), 416, headers(Content_Range="bytes */10"), Action.COMPLETE, 10, 10,
                     id="416-validated-part-is-whole-though-saved-size-lied"),
        pytest.param(10, ResumeState(URL, '"v1"', None, 10), 416, headers(Content_Range="bytes */10", ETag='"v2"'), Action.RESTART,
                     0, None, id="416-with-another-etag"),
        pytest.param(10, ResumeState(URL, 'W/"v1"', None, 12), 416, headers(Content_Range="bytes */10"), Action.RESTART, 0, None,
                     id="416-no-validator-saved-size-differs"),
        pytest.param(10, NOTHING_SAVED, 416, headers(Content_Range="bytes */10"), Action.RESTART, 0, None,
                     id="416-nothing-proves-file"),
        pytest.param(0, None, 416, headers(Content_Range="bytes */0"), Action.RESTART, 0, None, id="416-to-plain-get"),
    ],
)
def test_judge_resume_table(have, state, status, answer, action, offset, total):
    """Each (on disk, answer) pair leads to the action, offset and total the table prescribes."""
    decision = decide(have, state, status, answer)
    assert (decision.action, decision.offset, decision.total) == (action, offset, total)


@pytest.mark.parametrize(
    ("have", "state", "status", "answer"),
    [
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 0-9/10"), id="wrong-start"),
        pytest.param(4, STRONG, 206, headers(Content_Range="bytes 4-9/10", ETag='"v2"'), id="etag-changed"),
        pytest.param(4, STRONG, 416, headers(Content_Range="bytes */10"), id="416-incomplete"),
        pytest.param(4, STRONG, 206, headers(), id="no-content-range"),
    ],
)
def test_judge_restart_gives_a_reason(have, state, status, answer):
    """Every RESTART carries a reason for the log."""
    decision = decide(have, state, status, answer)
    assert decision.action is Action.RESTART
    assert decision.reason


def test_judge_200_saves_etag_last_modified_and_size():
    """A 200 hands back the state to save: ETag, Last-Modified and the announced size."""
    decision = decide(0, None, 200, headers(Content_Length="10", ETag='"abc"', Last_Modified=LM))
    assert decision.state == ResumeState(URL, '"abc"', LM, 10)


def test_judge_200_saves_weak_etag_as_sent():
    """A weak ETag is kept in the state as sent (plan_request is what keeps it out of If-Range)."""
    decision = decide(0, None, 200, headers(ETag='W/"abc"'))
    assert decision.state == ResumeState(URL, 'W/"abc"', None, None)


def test_judge_200_to_fresh_request_has_no_reason():
    """A plain 200 to a plain GET is not logged as dropping a part."""
    assert decide(0, None, 200, headers(Content_Length="10")).reason == ""


def test_judge_200_to_ranged_request_explains_the_restart():
    """A 200 answering a Range request writes from 0 and says why the part is dropped."""
    decision = decide(4, STRONG, 200, headers(Content_Length="10"))
    assert (decision.action, decision.offset) == (Action.WRITE, 0)
    assert decision.reason


def test_judge_unrequested_whole_206_saves_the_same_state_as_a_200():
    """A whole-file 206 to a plain GET saves ETag and Last-Modified, as a 200 with the same headers would."""
    answer = headers(Content_Range="bytes 0-9/10", ETag='"abc"', Last_Modified=LM)
    decision = decide(0, None, 206, answer)
    assert decision.state == ResumeState(URL, '"abc"', LM, 10)


def test_judge_resume_206_does_not_replace_the_saved_state():
    """An appended 206 carries no new state: the saved one stays valid."""
    decision = decide(4, STRONG, 206, headers(Content_Range="bytes 4-9/10", ETag='"v1"'))
    assert decision.state is None


@pytest.mark.parametrize(
    ("have", "state", "status", "answer"),
    [
        pytest.param(0, None, 200, headers(Content_Length="10"), id="200"),
        pytest.param(4, STRONG_NO_SIZE, 206, headers(Content_Range="bytes 4-9/10"), id="206"),
        pytest.param(0, None, 206, headers(Content_Range="bytes 0-9/10"), id="unrequested-206"),
        pytest.param(10, STRONG_NO_SIZE, 416, headers(Content_Range="bytes */10"), id="416-complete"),
    ],
)
def test_judge_announced_size_other_than_list_size_is_integrity_error(have, state, status, answer):
    """A total announced by the server that differs from the list's size= raises IntegrityError."""
    job = Job(URL, size=11)
    with pytest.raises(IntegrityError) as info:
        decide(have, state, status, answer, job=job)
    assert (info.value.expected, info.value.actual, info.value.url) == ("11", "10", URL)


def test_judge_announced_size_equal_to_list_size_is_accepted():
    """A total equal to the list's size= is written normally."""
    decision = decide(0, None, 200, headers(Content_Length="10"), job=Job(URL, size=10))
    assert (decision.action, decision.total) == (Action.WRITE, 10)


def test_judge_unknown_total_is_not_checked_against_list_size():
    """Without an announced total the list's size= is left for check_complete."""
    decision = decide(0, None, 200, headers(), job=Job(URL, size=10))
    assert (decision.action, decision.total) == (Action.WRITE, None)


def test_judge_restart_is_not_checked_against_list_size():
    """A RESTART carries no total, so a size= in the list cannot fail it."""
    decision = decide(4, STRONG, 206, headers(Content_Range="bytes 0-19/20"), job=Job(URL, size=10))
    assert decision.action is Action.RESTART


# --- judge: statuses without a usable body -------------------------------------------

RETRYABLE = [408, 425, 429, 500, 502, 503, 504]
NOT_RETRYABLE = [400, 401, 403, 404, 405, 410, 411, 412, 418, 451, 501, 505, 511, 599, 204, 201]
REDIRECTS = [301, 302, 303, 304, 307, 308]


def test_retryable_statuses_are_exactly_the_documented_set():
    """The retryable set is 408, 425, 429, 500, 502, 503, 504 and nothing else."""
    assert RETRYABLE_STATUSES == frozenset(RETRYABLE)


@pytest.mark.parametrize("status", RETRYABLE, ids=str)
def test_judge_transient_status_is_retryable(status):
    """A transient status raises a retryable HTTPStatusError naming the status."""
    with pytest.raises(HTTPStatusError) as info:
        decide(0, None, status, headers())
    assert (info.value.status, info.value.retryable, info.value.url) == (status, True, URL)
    assert str(status) in str(info.value)


@pytest.mark.parametrize("status", NOT_RETRYABLE, ids=str)
def test_judge_other_status_is_not_retryable(status):
    """Any other status without a usable body raises a non-retryable HTTPStatusError."""
    with pytest.raises(HTTPStatusError) as info:
        decide(0, None, status, headers())
    assert (info.value.status, info.value.retryable) == (status, False)


@pytest.mark.parametrize("status", REDIRECTS, ids=str)
def test_judge_redirect_is_not_retryable_and_names_location(status):
    """A 3xx that reaches judge is not retried, and the error names its Location."""
    with pytest.raises(HTTPStatusError) as info:
        decide(0, None, status, headers(Location="http://elsewhere.test/x"))
    assert (info.value.status, info.value.retryable) == (status, False)
    assert "http://elsewhere.test/x" in str(info.value)


def test_judge_404_reason_has_status_phrase():
    """The error reads like 'HTTP 404 Not Found'."""
    with pytest.raises(HTTPStatusError) as info:
        decide(0, None, 404, headers())
    assert str(info.value) == "HTTP 404 Not Found"


def test_judge_unknown_status_has_no_phrase():
    """A status without a standard phrase still raises, reading 'HTTP 599'."""
    with pytest.raises(HTTPStatusError) as info:
        decide(0, None, 599, headers())
    assert str(info.value) == "HTTP 599"


@pytest.mark.parametrize(
    ("status", "value", "expected"),
    [
        pytest.param(503, "7", 7.0, id="503-seconds"),
        pytest.param(429, "0", 0.0, id="429-zero"),
        pytest.param(503, "soon", None, id="503-garbage"),
        pytest.param(500, None, None, id="500-absent"),
    ],
)
def test_judge_parses_retry_after_into_error(status, value, expected):
    """Retry-After on a retryable status ends up in HTTPStatusError.retry_after."""
    answer = headers() if value is None else headers(Retry_After=value)
    with pytest.raises(HTTPStatusError) as info:
        decide(0, None, status, answer)
    assert info.value.retry_after == expected


def test_judge_parses_retry_after_http_date_into_error():
    """An HTTP-date Retry-After becomes seconds from now."""
    when = (datetime.now(timezone.utc) + timedelta(seconds=120)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    with pytest.raises(HTTPStatusError) as info:
        decide(0, None, 503, headers(Retry_After=when))
    assert 100 <= info.value.retry_after <= 121


def test_judge_reads_headers_case_insensitively():
    """Lower-case header names from the wire are understood."""
    answer = CaseInsensitiveDict({"content-range": "bytes 4-9/10", "etag": '"v2"'})
    assert decide(4, STRONG, 206, answer).action is Action.RESTART


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\xb2", id="superscript-two"),
        pytest.param("1\xb9", id="one-superscript-one"),
    ],
)
def test_judge_non_ascii_digit_content_length_is_malformed(value):
    """A Content-Length of digit-like non-ASCII characters is an invalid one, not a crash (RFC 9112 §6.3)."""
    with pytest.raises(MalformedResponse, match="not a number"):
        decide(0, None, 200, headers(Content_Length=value))


# --- parse_content_range ------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("bytes 0-9/10", (0, 9, 10), id="whole"),
        pytest.param("bytes 4-9/10", (4, 9, 10), id="tail"),
        pytest.param("bytes 0-0/1", (0, 0, 1), id="one-byte"),
        pytest.param("bytes 4-9/*", (4, 9, None), id="unknown-total"),
        pytest.param("  bytes 4-9/10 ", (4, 9, 10), id="padded"),
        pytest.param("bytes   4-9/10", (4, 9, 10), id="several-spaces"),
        pytest.param("bytes 5-4/10", None, id="last-before-first"),
        pytest.param("bytes 0-10/10", None, id="last-beyond-total"),
        pytest.param("bytes */10", None, id="unsatisfied-form"),
        pytest.param("bytes 4-/10", None, id="open-end"),
        pytest.param("bytes=4-9/10", None, id="equals-sign"),
        pytest.param("items 4-9/10", None, id="other-unit"),
        pytest.param("bytes -4-9/10", None, id="negative"),
        pytest.param("bytes 4-9/10 junk", None, id="trailing-junk"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parse_content_range(value, expected):
    """Content-Range values parse to (first, last, total) or None when unusable."""
    assert parse_content_range(value) == expected


# --- parse_retry_after --------------------------------------------------------------

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("0", 0.0, id="zero"),
        pytest.param("120", 120.0, id="seconds"),
        pytest.param(" 30 ", 30.0, id="padded-seconds"),
        pytest.param("Fri, 01 Mar 2024 12:01:30 GMT", 90.0, id="imf-fixdate"),
        pytest.param("Friday, 01-Mar-24 12:00:10 GMT", 10.0, id="rfc850-date"),
        pytest.param("Fri Mar  1 12:00:20 2024", 20.0, id="asctime-date"),
        pytest.param("Fri, 01 Mar 2024 11:00:00 GMT", 0.0, id="date-in-past-is-zero"),
        pytest.param("Fri, 01 Mar 2024 12:00:00 GMT", 0.0, id="date-now"),
        pytest.param("-5", None, id="negative"),
        pytest.param("1.5", None, id="fraction"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parse_retry_after(value, expected):
    """Retry-After is delta-seconds or an HTTP-date relative to now; anything else is None."""
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_date_with_offset_is_converted_to_utc():
    """An HTTP-date with a numeric zone offset is compared in UTC."""
    assert parse_retry_after("Fri, 01 Mar 2024 13:00:05 +0100", now=NOW) == 5.0


def test_parse_retry_after_non_ascii_digits_is_none():
    """A value made of digit-like non-ASCII characters is unusable, not a crash."""
    assert parse_retry_after("\xb2", now=NOW) is None


# --- check_complete -----------------------------------------------------------------

SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.mark.parametrize(
    ("job", "size", "total"),
    [
        pytest.param(Job(URL), 10, 10, id="size-equals-total"),
        pytest.param(Job(URL), 10, None, id="unknown-total"),
        pytest.param(Job(URL), 0, 0, id="empty-file"),
        pytest.param(Job(URL, size=10), 10, None, id="list-size-matches"),
    ],
)
def test_check_complete_accepts(job, size, total):
    """A body that is whole and matches the list passes silently."""
    assert check_complete(job, size=size, total=total) is None


def test_check_digest_accepts_the_expected_digest():
    assert check_digest(URL, "sha256", SHA_A, SHA_A) is None


@pytest.mark.parametrize("header", [None, "Repr-Digest"])
def test_check_digest_names_both_digests_and_the_source(header):
    """A digest that differs raises IntegrityError with both as ALG:HEX, naming the server's header."""
    with pytest.raises(IntegrityError) as info:
        check_digest(URL, "md5", "a" * 32, "b" * 32, header)
    assert (info.value.expected, info.value.actual) == ("md5:" + "a" * 32, "md5:" + "b" * 32)
    assert str(info.value.reason).startswith("md5 mismatch" + (" (the server's Repr-Digest)" if header else ""))


def test_check_complete_short_body_is_body_incomplete():
    """Fewer bytes than announced raise BodyIncomplete (resumable)."""
    with pytest.raises(BodyIncomplete) as info:
        check_complete(Job(URL), size=9, total=10)
    assert info.value.url == URL


@pytest.mark.parametrize(
    ("job", "size", "total", "expected", "actual"),
    [
        pytest.param(Job(URL), 11, 10, "10", "11", id="more-than-announced"),
        pytest.param(Job(URL, size=12), 10, None, "12", "10", id="list-size-differs"),
    ],
)
def test_check_complete_rejects(job, size, total, expected, actual):
    """A whole but wrong body raises IntegrityError with the expected and actual values."""
    with pytest.raises(IntegrityError) as info:
        check_complete(job, size=size, total=total)
    assert (info.value.expected, info.value.actual) == (expected, actual)


# --- ResumeState --------------------------------------------------------------------

@pytest.mark.parametrize(
    "state",
    [STRONG, LM_ONLY, WEAK_AND_LM, NOTHING_SAVED, ResumeState(URL, '"x"', LM, 0)],
    ids=["strong", "last-modified", "weak-and-lm", "empty", "size-zero"],
)
def test_resume_state_round_trips(state):
    """dumps then loads gives back an equal state."""
    assert ResumeState.loads(state.dumps(), URL) == state


def test_resume_state_dumps_is_versioned_json():
    """The saved text is JSON with a version and every field."""
    assert json.loads(STRONG.dumps()) == {"version": 1, "url": URL, "etag": '"v1"', "last_modified": None, "size": 10}


_MISSING = object()


def _saved(**changes: object) -> str:
    """A saved state's JSON text with some fields changed (or removed with _MISSING)."""
    data = {"version": 1, "url": URL, "etag": '"v1"', "last_modified": LM, "size": 10}
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not _MISSING})


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("{not json", id="damaged-json"),
        pytest.param('{"version": 1, "url": "' + URL, id="truncated"),
        pytest.param("[]", id="list"),
        pytest.param('"text"', id="string"),
        pytest.param("null", id="null"),
        pytest.param("7", id="number"),
        pytest.param(_saved(version=2), id="newer-version"),
        pytest.param(_saved(version=0), id="older-version"),
        pytest.param(_saved(version="1"), id="version-as-string"),
        pytest.param(_saved(version=True), id="version-as-bool"),
        pytest.param(_saved(version=_MISSING), id="version-missing"),
        pytest.param(_saved(url="http://example.test/other.bin"), id="another-url"),
        pytest.param(_saved(url=None), id="url-null"),
        pytest.param(_saved(etag=_MISSING), id="etag-missing"),
        pytest.param(_saved(etag=5), id="etag-number"),
        pytest.param(_saved(last_modified=["x"]), id="last-modified-list"),
        pytest.param(_saved(size="10"), id="size-string"),
        pytest.param(_saved(size=-1), id="size-negative"),
        pytest.param(_saved(size=1.5), id="size-float"),
        pytest.param(_saved(size=True), id="size-bool"),
    ],
)
def test_resume_state_loads_rejects(text):
    """A damaged, foreign or ill-typed state loads as None."""
    assert ResumeState.loads(text, URL) is None


def test_resume_state_loads_ignores_unknown_fields():
    """Extra fields do not make a state unusable."""
    data = json.loads(STRONG.dumps()) | {"extra": 1}
    assert ResumeState.loads(json.dumps(data), URL) == STRONG


@pytest.mark.parametrize(
    ("state", "strong", "validator"),
    [
        pytest.param(STRONG, '"v1"', '"v1"', id="strong"),
        pytest.param(ResumeState(URL, '"v1"', LM, 10), '"v1"', '"v1"', id="strong-preferred-over-date"),
        pytest.param(WEAK_AND_LM, None, None, id="weak-etag-forbids-date"),
        pytest.param(WEAK_ONLY, None, None, id="weak-only"),
        pytest.param(LM_ONLY, None, LM, id="date-only"),
        pytest.param(NOTHING_SAVED, None, None, id="nothing"),
        pytest.param(ResumeState(URL, "", LM, 10), None, LM, id="empty-etag"),
    ],
)
def test_resume_state_validator(state, strong, validator):
    """strong_etag excludes weak tags; validator is the strong ETag, else the date only when there is no ETag at all."""
    assert (state.strong_etag, state.validator) == (strong, validator)


def test_resume_state_from_headers_reads_validators():
    """from_headers takes ETag and Last-Modified from the response and the given size."""
    state = ResumeState.from_headers(URL, headers(ETag='"e"', Last_Modified=LM), 42)
    assert state == ResumeState(URL, '"e"', LM, 42)


# -- follow_redirect and with_cookie -----------------------------------------------------------

A, B = "http://a.test/f", "http://b.test/login"
OPTIONS = RequestOptions("ua", (("Cookie", "h=0"),), None, {})


def test_follow_redirect_follows_a_url_seen_before_with_its_range():
    """A chain may come back to a URL it visited: followed, the Range kept, the hops recorded."""
    first = Request(A, {"Range": "bytes=5-", "Cookie": "h=0"}, 5, A)

    away = follow_redirect(first, {"Location": B}, max_redirects=10, options=OPTIONS)
    back = follow_redirect(away, {"Location": A}, max_redirects=10, options=OPTIONS)

    assert (A, (A, B), 5) == (back.url, back.hops, back.offset)
    assert "bytes=5-" == back.headers["Range"] and "h=0" == back.headers["Cookie"]
    assert "Cookie" not in away.headers


def test_follow_redirect_stops_at_the_limit_naming_the_chain():
    request = Request(A, {}, 0, A, (A, B))

    with pytest.raises(Refused, match=rf"more than 2 redirects: {A} -> {B} -> {A} -> {B}$"):
        follow_redirect(request, {"Location": B}, max_redirects=2, options=OPTIONS)


@pytest.mark.parametrize("headers, expected", [
    pytest.param({}, {"Cookie": "j=1"}, id="alone"),
    pytest.param({"cookie": "h=0"}, {"cookie": "h=0; j=1"}, id="after-a-header-cookie"),
])
def test_with_cookie_adds_the_jar_cookies_in_one_header(headers, expected):
    request = Request(A, dict(headers), 0, A)

    assert expected == with_cookie(request, "j=1").headers
    assert headers == request.headers  # the request itself is not changed


@pytest.mark.parametrize("headers, fault", [
    ({"Content-Length": "5"}, None),
    ({"Transfer-Encoding": "chunked"}, None),
    ({}, None),
    ({"Content-Length": "abc"}, "invalid Content-Length: 'abc' is not a number"),
    ({"Content-Length": "-5"}, "invalid Content-Length: '-5' is not a number"),
    ({"Content-Length": "+5"}, "invalid Content-Length: '+5' is not a number"),
    ({"Content-Length": ""}, "invalid Content-Length: '' is not a number"),
    ({"Content-Length": "5, 6"}, "invalid Content-Length: several values (5, 6)"),
    ({"Content-Length": "5, 5"}, "invalid Content-Length: several values (5, 5)"),
    ({"Content-Length": "3", "Transfer-Encoding": "chunked"},
     "invalid framing: both Content-Length and Transfer-Encoding"),
    ({"X-A": "a\0b"}, "header X-A holds a NUL, CR or LF character"),
    ({"X-A": "a\rb"}, "header X-A holds a NUL, CR or LF character"),
    ({"X-A": "a\r\n b"}, None),  # an obs-fold, as http.client keeps it
    ({"Content-Length": "9223372036854775807"}, None),
    ({"Content-Length": "9223372036854775808"}, "invalid Content-Length: 9223372036854775808 is too large"),
])
def test_framing_fault(headers, fault):
    """RFC 9112 §6.3: a Content-Length that is not one number, or one beside Transfer-Encoding, is a fault."""
    assert fault == framing_fault(CaseInsensitiveDict(headers))


def test_framing_fault_sees_repeated_items():
    """A repeated header given as several items (aiohttp's multidict) is seen as several values."""
    from multidict import CIMultiDict

    assert "invalid Content-Length: several values (5, 6)" == framing_fault(
        CIMultiDict([("Content-Length", "5"), ("Content-Length", "6")]))


def test_judge_refuses_invalid_framing_before_the_status():
    """An invalid Content-Length fails the answer, whatever its status, as never retried."""
    with pytest.raises(MalformedResponse, match="not a number"):
        judge(Request(URL, {}), 200, CaseInsensitiveDict({"Content-Length": "x"}), job=JOB, state=None)
