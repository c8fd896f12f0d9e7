"""Unit tests for downloader.attempt: one attempt's state machine driven with plain values
(no file, no socket): whole step sequences from begin() to result(), as an engine walks them.

The function-level rules (plan_request, judge, parse_*, check_complete) are tested in
test_core.py, and the same machine with a Part on disk in test_storage.py.
"""

from __future__ import annotations

import base64
import hashlib
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

from downloader.attempt import SMALL_BODY, Attempt, Finish, Send, Split, Step, Write
from downloader.config import Config
from downloader.core import ResumeState, Validators
from downloader.errors import (
    BodyIncomplete,
    HTTPStatusError,
    IntegrityError,
    Refused,
    StallTimeout,
    TransferError,
)
from downloader.jobs import Job, Status

URL = "http://example.test/data/f.bin"
CDN = "http://cdn.test/files/f.bin"
TOTAL = 100_000
BODY = b"0123456789" * (TOTAL // 10)
SHA = hashlib.sha256(BODY).hexdigest()
HAVE = 8
ETAG = '"v1"'
LM = "Tue, 14 Nov 2023 22:13:20 GMT"
SAVED = ResumeState(URL, ETAG, LM, TOTAL)
PATH = Path("/nonexistent/f.bin")
SPLIT = {"split": 4, "min_split_size": 10_000}
QUARTERS = ((0, 25_000, 0), (25_000, 50_000, 0), (50_000, 75_000, 0), (75_000, 100_000, 0))


def attempt(job: Job | None = None, *, current: Validators | None = None, **config: object) -> Attempt:
    """An Attempt at ``job`` (default: URL) under a Config that names a destination never touched."""
    return Attempt(job or Job(URL), Config(dest=Path("/nonexistent"), **config), current=current)


def headers(**fields: str) -> dict[str, str]:
    """Response headers as a plain dict; underscores become dashes (Content_Length: Content-Length)."""
    return {name.replace("_", "-"): value for name, value in fields.items()}


def full(size: int = TOTAL, **fields: str) -> dict[str, str]:
    """A 200's headers for a file of ``size`` bytes, with ETag and Last-Modified unless overridden."""
    return headers(**{"Content_Length": str(size), "ETag": ETAG, "Last_Modified": LM, **fields})


def partial(start: int = HAVE, total: int = TOTAL, etag: str = ETAG) -> dict[str, str]:
    """A 206's headers for bytes ``start``- of a file of ``total`` bytes."""
    return headers(Content_Range=f"bytes {start}-{total - 1}/{total}", Content_Length=str(total - start), ETag=etag)


def moved(location: str) -> dict[str, str]:
    return headers(Location=location)


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


def feed_all(a: Attempt, body: bytes, size: int = 30_000) -> None:
    """Feed ``body`` in pieces, as an engine feeds what it wrote."""
    for start in range(0, len(body), size):
        a.feed(body[start:start + size])


# --- a fresh download ---------------------------------------------------------------------

def test_fresh_begin_sends_a_plain_get():
    """Nothing in the part: the first step is a GET of the job's URL, without Range or conditions."""
    step = attempt(user_agent="tester/1").begin(0, None)

    assert isinstance(step, Send) and not step.discard
    assert (URL, 0) == (step.request.url, step.request.offset)
    assert {"Accept-Encoding": "identity", "User-Agent": "tester/1",
            "Want-Repr-Digest": "sha-256=10, sha-512=3"} == step.request.headers


@pytest.mark.parametrize(("job", "config"), [
    pytest.param(Job(URL, checksum="md5:" + "0" * 32), {}, id="the-list-gives-a-checksum"),
    pytest.param(Job(URL), {"server_digest": False}, id="no-server-digest"),
])
def test_no_want_repr_digest_when_the_list_has_a_checksum_or_digests_are_off(job, config):
    step = attempt(job, **config).begin(0, None)
    assert isinstance(step, Send) and "Want-Repr-Digest" not in step.request.headers


def test_fresh_200_writes_from_zero_with_the_answer_state():
    """A 200 with Content-Length is written from 0, with a state naming its ETag, Last-Modified and size."""
    a = attempt()
    a.begin(0, None)

    step = a.answer(200, full())

    assert Write(0, TOTAL, ResumeState(URL, ETAG, LM, TOTAL), whole=False) == step


@pytest.mark.parametrize(("size", "whole"), [(0, True), (100, True), (SMALL_BODY, True), (SMALL_BODY + 1, False)])
def test_small_body_is_written_whole(size, whole):
    """A body of known length up to SMALL_BODY is one whole Write; a larger one streams."""
    a = attempt()
    a.begin(0, None)

    assert whole == a.answer(200, full(size)).whole


@pytest.mark.parametrize(("size", "whole"), [(1024, True), (1025, False)])
def test_small_body_limit_is_never_above_the_chunk_size(size, whole):
    """With a chunk size below SMALL_BODY, a body larger than one chunk streams."""
    a = attempt(chunk_size=1024)
    a.begin(0, None)

    assert whole == a.answer(200, full(size)).whole


def test_unknown_length_writes_with_total_none():
    """A 200 without Content-Length is streamed from 0 with an unknown total (and not whole)."""
    a = attempt()
    a.begin(0, None)

    assert Write(0, None, ResumeState(URL, None, None, None)) == a.answer(200, {})


def test_fresh_download_walk_ends_with_the_result():
    """begin, 200, feed, ended, check, result: the result names size, digest, final URL and validators."""
    a = attempt(Job(URL, checksum="sha256:" + SHA, origin="list.txt:3"))
    a.begin(0, None)
    a.answer(200, full())
    feed_all(a, BODY)
    step = a.ended()
    a.check()

    result = a.result(PATH)

    assert Finish() == step
    assert (URL, Status.DOWNLOADED, str(PATH), TOTAL, TOTAL, "sha256:" + SHA, None, "list.txt:3", URL, ETAG, LM) == (
        result.url, result.status, result.path, result.size, result.received, result.checksum, result.error,
        result.origin, result.final_url, result.etag, result.last_modified)


def test_unknown_length_is_checked_by_what_arrived():
    """A body of unknown length is whole when it ends: check passes and the size is what was fed."""
    a = attempt()
    a.begin(0, None)
    a.answer(200, {})
    feed_all(a, BODY[:1234])
    a.check()

    result = a.result(PATH)

    assert (1234, 1234, None, None) == (result.size, result.received, result.etag, a.mtime)


def test_short_body_fails_check_as_incomplete():
    """A body that ends before its Content-Length fails check with BodyIncomplete (another attempt resumes)."""
    a = attempt()
    a.begin(0, None)
    a.answer(200, full())
    feed_all(a, BODY[:500])

    with pytest.raises(BodyIncomplete, match="after 500 of 100000 bytes"):
        a.check()


def test_mtime_is_the_answer_last_modified():
    """The file's mtime is the Last-Modified of the answer, in seconds since the epoch."""
    a = attempt()
    a.begin(0, None)
    a.answer(200, full())

    assert 1_700_000_000.0 == a.mtime


def test_result_final_url_is_the_last_hop():
    """After redirects the result's final_url is where the body came from; url stays the job's."""
    a = attempt()
    a.begin(0, None)
    a.answer(302, moved(CDN))
    a.answer(200, full(10))
    a.feed(BODY[:10])
    a.check()

    result = a.result(PATH)

    assert (URL, CDN) == (result.url, result.final_url)


# --- resuming a part ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("state", "if_range"),
    [
        pytest.param(SAVED, ETAG, id="strong-etag"),
        pytest.param(ResumeState(URL, None, LM, TOTAL), LM, id="last-modified-without-etag"),
        pytest.param(ResumeState(URL, 'W/"v1"', LM, TOTAL), None, id="weak-etag-no-if-range"),
    ],
)
def test_resume_begin_sends_range_and_if_range(state, if_range):
    """A part with a state is continued with Range from its end, and If-Range only with a usable validator."""
    step = attempt().begin(HAVE, state)

    assert isinstance(step, Send) and not step.discard
    assert (f"bytes={HAVE}-", if_range, HAVE) == (
        step.request.headers["Range"], step.request.headers.get("If-Range"), step.request.offset)


def test_resume_206_writes_from_the_part_end_without_new_state():
    """A 206 from the part's end is appended at HAVE; the saved state stays as it is (no new one)."""
    a = attempt()
    a.begin(HAVE, SAVED)

    assert Write(HAVE, TOTAL, None) == a.answer(206, partial())


def test_resume_walk_counts_the_part_in_the_size():
    """The result of a resumed file has the whole size, and received only this attempt's bytes."""
    a = attempt()
    a.begin(HAVE, SAVED)
    a.answer(206, partial())
    feed_all(a, BODY[HAVE:])
    a.check()

    result = a.result(PATH)

    assert (TOTAL, TOTAL - HAVE) == (result.size, result.received)


@pytest.mark.parametrize(
    ("have", "state", "config"),
    [
        pytest.param(HAVE, SAVED, {"resume": False}, id="resume-off"),
        pytest.param(0, SAVED, {}, id="empty-part"),
        pytest.param(HAVE, None, {}, id="no-state"),
    ],
)
def test_unusable_part_means_plain_get(have, state, config):
    """With --no-resume, an empty part or no state, the part is not resumed: a GET without Range."""
    step = attempt(**config).begin(have, state)

    assert isinstance(step, Send)
    assert (0, None, None) == (step.request.offset, step.request.headers.get("Range"),
                               step.request.headers.get("If-Range"))


def test_state_for_another_url_means_plain_get():
    """A state that describes another URL is not used to resume the part."""
    step = attempt().begin(HAVE, ResumeState("http://example.test/other.bin", ETAG, LM, TOTAL))

    assert "Range" not in step.request.headers


# --- redirects --------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_sends_to_the_location(status):
    """Each redirect status gives the next hop: a GET of the Location, the part untouched."""
    a = attempt()
    a.begin(0, None)

    step = a.answer(status, moved(CDN))

    assert isinstance(step, Send) and not step.discard
    assert (CDN, URL, (URL,)) == (step.request.url, step.request.origin, step.request.hops)


def test_redirect_location_is_resolved_and_its_fragment_dropped():
    """A relative Location is resolved against the current URL and its #fragment dropped."""
    a = attempt()
    a.begin(0, None)

    assert "http://example.test/other/g.bin?x=1" == a.answer(302, moved(" ../other/g.bin?x=1#part ")).request.url


def test_range_and_if_range_are_kept_across_hops():
    """A resumed request keeps Range and If-Range through two hops, and the 206 is appended."""
    a = attempt()
    a.begin(HAVE, SAVED)
    a.answer(301, moved("http://mirror.test/f.bin"))
    step = a.answer(302, moved(CDN))

    assert (f"bytes={HAVE}-", ETAG, HAVE) == (step.request.headers["Range"], step.request.headers["If-Range"],
                                              step.request.offset)
    assert Write(HAVE, TOTAL, None) == a.answer(206, partial())


def test_user_credentials_go_to_the_origin_host_only():
    """--user is sent to the job's host, not to another host it redirects to, and again back at the origin."""
    a = attempt(user=("me", "pw"))
    first = a.begin(0, None).request
    elsewhere = a.answer(302, moved(CDN)).request
    back = a.answer(302, moved("http://example.test/final.bin")).request

    assert (basic("me", "pw"), None, basic("me", "pw")) == (
        first.headers.get("Authorization"), elsewhere.headers.get("Authorization"), back.headers.get("Authorization"))


def test_netrc_credentials_are_chosen_per_host():
    """netrc credentials go to the host they are for: none to the origin here, the CDN's to the CDN."""
    a = attempt(netrc=(("cdn.test", "n", "p"), ("other.test", "x", "y")))
    first = a.begin(0, None).request
    hop = a.answer(302, moved(CDN)).request

    assert (None, basic("n", "p")) == (first.headers.get("Authorization"), hop.headers.get("Authorization"))


def test_redirect_without_location_is_refused():
    """A redirect with no Location cannot be followed: Refused (never retried)."""
    a = attempt()
    a.begin(0, None)

    with pytest.raises(Refused, match="without a Location"):
        a.answer(302, {})


def test_redirect_to_another_scheme_is_refused():
    """A redirect to a non-http(s) URL is Refused, naming the scheme."""
    a = attempt()
    a.begin(0, None)

    with pytest.raises(Refused, match="unsupported scheme 'ftp'"):
        a.answer(302, moved("ftp://example.test/f.bin"))


def test_hop_limit_is_refused_naming_it():
    """With --max-redirects 2, two hops are followed and the third is Refused, naming the limit."""
    a = attempt(max_redirects=2)
    a.begin(0, None)
    a.answer(302, moved("http://a.test/1"))
    a.answer(302, moved("http://b.test/2"))

    with pytest.raises(Refused, match="more than 2 redirects"):
        a.answer(302, moved("http://c.test/3"))


def test_no_redirect_allowed_with_max_redirects_zero():
    """--max-redirects 0 refuses the first redirect."""
    a = attempt(max_redirects=0)
    a.begin(0, None)

    with pytest.raises(Refused, match="more than 0 redirects"):
        a.answer(301, moved(CDN))


@pytest.mark.parametrize("chain", [pytest.param([URL], id="to-itself"), pytest.param([CDN, URL], id="back-to-origin")])
def test_url_seen_twice_in_a_chain_is_followed(chain):
    """A URL seen twice in one chain is followed (a login flow comes back to the data URL),
    with the same method, range and credential rules as any hop."""
    a = attempt(user=("ann", "pw"))
    a.begin(HAVE, SAVED)
    for location in chain:
        step = a.answer(302, moved(location))

    assert isinstance(step, Send) and URL == step.request.url
    assert f"bytes={HAVE}-" == step.request.headers["Range"] and ETAG == step.request.headers["If-Range"]
    assert basic("ann", "pw") == step.request.headers["Authorization"]
    assert isinstance(a.answer(206, partial()), Write)


def test_true_loop_costs_the_hop_limit_and_names_the_chain():
    """A -> B -> A -> ... is followed --max-redirects times, then Refused with the chain in the reason."""
    a = attempt(max_redirects=3)
    a.begin(0, None)
    sent = [a.answer(302, moved(location)).request.url for location in (CDN, URL, CDN)]

    with pytest.raises(Refused) as raised:
        a.answer(302, moved(URL))

    assert [CDN, URL, CDN] == sent
    assert f"more than 3 redirects: {URL} -> {CDN} -> {URL} -> {CDN} -> {URL}" in str(raised.value)


def test_a_long_chain_is_shortened_in_the_reason():
    """With a high limit the reason shows the chain's first and last URLs around "..."."""
    a = attempt(max_redirects=20)
    a.begin(0, None)
    for i in range(20):
        a.answer(302, moved(f"http://h.test/{i}"))

    with pytest.raises(Refused) as raised:
        a.answer(302, moved("http://h.test/20"))

    assert f"more than 20 redirects: {URL} -> http://h.test/0 -> http://h.test/1 -> http://h.test/2 -> ... -> " \
           "http://h.test/17 -> http://h.test/18 -> http://h.test/19 -> http://h.test/20" in str(raised.value)


def test_state_after_a_redirect_is_for_the_job_url():
    """The state saved for a 200 after a redirect names the job's URL, so that the next run finds it."""
    a = attempt()
    a.begin(0, None)
    a.answer(302, moved(CDN))

    assert ResumeState(URL, ETAG, LM, TOTAL) == a.answer(200, full()).state


def test_state_of_a_whole_206_after_a_redirect_is_for_the_job_url():
    """A whole-file 206 after a redirect saves the same state as a 200: for the job's URL."""
    a = attempt()
    a.begin(0, None)
    a.answer(302, moved(CDN))

    assert ResumeState(URL, ETAG, None, TOTAL) == a.answer(206, partial(start=0)).state


# --- restarting the part ----------------------------------------------------------------------

def test_200_to_a_range_request_writes_the_new_version_from_zero():
    """A 200 to a resume empties the part (offset 0) and saves the state of the new version."""
    a = attempt()
    a.begin(HAVE, SAVED)

    assert Write(0, TOTAL, ResumeState(URL, '"v2"', LM, TOTAL)) == a.answer(200, full(ETag='"v2"'))


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(partial(start=0), id="wrong-start"),
        pytest.param(partial(etag='"v2"'), id="other-etag"),
        pytest.param(partial(total=TOTAL + 1), id="other-size"),
        pytest.param(headers(Content_Length=str(TOTAL - HAVE)), id="no-content-range"),
    ],
)
def test_unusable_206_restarts_with_a_plain_get(answer):
    """A 206 that cannot continue the part: empty it (discard) and GET the whole file."""
    a = attempt()
    a.begin(HAVE, SAVED)

    step = a.answer(206, answer)

    assert isinstance(step, Send) and step.discard
    assert (URL, 0, None, None) == (step.request.url, step.request.offset, step.request.headers.get("Range"),
                                    step.request.headers.get("If-Range"))


def test_restart_then_200_completes_in_the_same_attempt():
    """After a restart the 200 is written from zero and the file finishes with its digest."""
    a = attempt(Job(URL, checksum="sha256:" + SHA))
    a.begin(HAVE, SAVED)
    a.answer(206, partial(start=0))
    step = a.answer(200, full())
    feed_all(a, BODY)
    a.check()

    result = a.result(PATH)

    assert (0, TOTAL, "sha256:" + SHA) == (step.offset, result.size, result.checksum)


def test_second_unusable_answer_in_one_attempt_is_a_transfer_error():
    """A second answer that cannot be used after a restart ends the attempt with a TransferError."""
    a = attempt()
    a.begin(HAVE, SAVED)
    a.answer(206, partial(etag='"v2"'))

    with pytest.raises(TransferError, match="twice"):
        a.answer(206, headers())


# --- --split ----------------------------------------------------------------------------------

def test_split_worthy_answer_is_split_with_planned_segments():
    """A 200 with Accept-Ranges: bytes, a validator and room for 4 segments becomes Split(first=True)."""
    a = attempt(**SPLIT)
    a.begin(0, None)

    step = a.answer(200, full(Accept_Ranges="bytes"))

    assert Split(ResumeState(URL, ETAG, LM, TOTAL, QUARTERS), first=True) == step
    assert step.state == a.state


def test_last_modified_is_validator_enough_to_split():
    """Without an ETag, a Last-Modified is the validator that lets the file be split."""
    a = attempt(**SPLIT)
    a.begin(0, None)

    assert isinstance(a.answer(200, headers(Content_Length=str(TOTAL), Last_Modified=LM, Accept_Ranges="bytes")), Split)


@pytest.mark.parametrize(
    ("config", "answer"),
    [
        pytest.param(SPLIT, full(), id="no-accept-ranges"),
        pytest.param(SPLIT, full(Accept_Ranges="none"), id="accept-ranges-none"),
        pytest.param(SPLIT, headers(Content_Length=str(TOTAL), Accept_Ranges="bytes"), id="no-validator"),
        pytest.param(SPLIT, full(ETag='W/"v1"', Last_Modified="", Accept_Ranges="bytes"), id="weak-etag-only"),
        pytest.param(SPLIT, headers(ETag=ETAG, Accept_Ranges="bytes"), id="unknown-length"),
        pytest.param({"split": 4, "min_split_size": TOTAL // 2 + 1}, full(Accept_Ranges="bytes"), id="too-small"),
        pytest.param({"min_split_size": 10_000}, full(Accept_Ranges="bytes"), id="split-off"),
    ],
)
def test_unsplittable_answer_is_one_stream(config, answer):
    """No Accept-Ranges, no (strong or date) validator, an unknown or too small size, or split=1: one Write."""
    a = attempt(**config)
    a.begin(0, None)

    assert isinstance(a.answer(200, answer), Write)


def test_segment_request_asks_for_its_range_at_the_last_hop():
    """A segment is a GET of bytes [start, end) with If-Range, sent to the URL the first answer came from."""
    a = attempt(**SPLIT)
    a.begin(0, None)
    a.answer(302, moved(CDN))
    a.answer(200, full(Accept_Ranges="bytes"))

    request = a.segment_request(25_000, 50_000)

    assert (CDN, 25_000, "bytes=25000-49999", ETAG, "identity") == (
        request.url, request.offset, request.headers["Range"], request.headers["If-Range"],
        request.headers["Accept-Encoding"])


def test_segment_request_after_a_redirect_sends_no_user_credentials_to_another_host():
    """--user is for the job's host: a segment sent to the host a redirect led to does not carry it."""
    a = attempt(user=("me", "pw"), **SPLIT)
    a.begin(0, None)
    a.answer(302, moved(CDN))
    a.answer(200, full(Accept_Ranges="bytes"))

    assert "Authorization" not in a.segment_request(25_000, 50_000).headers


def _split_attempt() -> Attempt:
    a = attempt(**SPLIT)
    a.begin(0, None)
    a.answer(200, full(Accept_Ranges="bytes"))
    return a


def test_segment_fits_a_206_for_its_range():
    """A 206 for exactly the asked bytes of the same file fits."""
    a = _split_attempt()
    request = a.segment_request(25_000, 50_000)

    assert a.segment_fits(request, 206, headers(Content_Range="bytes 25000-49999/100000", ETag=ETAG), 50_000)


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        pytest.param(200, full(), id="200"),
        pytest.param(206, headers(Content_Range="bytes 0-24999/100000", ETag=ETAG), id="other-bytes"),
        pytest.param(206, headers(Content_Range="bytes 25000-49999/100001", ETag=ETAG), id="other-size"),
        pytest.param(206, headers(Content_Range="bytes 25000-49999/100000", ETag='"v2"'), id="other-etag"),
        pytest.param(206, headers(ETag=ETAG), id="no-content-range"),
        pytest.param(302, moved(CDN), id="redirect"),
    ],
)
def test_segment_does_not_fit(status, answer):
    """A 200, a 206 for other bytes, another size or ETag, or a redirect does not fit the segment."""
    a = _split_attempt()

    assert not a.segment_fits(a.segment_request(25_000, 50_000), status, answer, 50_000)


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (503, True)])
def test_segment_error_status_raises(status, retryable):
    """An error status to a segment request raises HTTPStatusError, retryable as any other."""
    a = _split_attempt()

    with pytest.raises(HTTPStatusError) as raised:
        a.segment_fits(a.segment_request(25_000, 50_000), status, {}, 50_000)

    assert (status, retryable) == (raised.value.status, raised.value.retryable)


def test_refused_split_restarts_from_zero_without_a_second_split():
    """split_ended(False): empty the part and GET the whole file; that answer is streamed, not split again."""
    a = _split_attempt()

    step = a.split_ended(False, 12_345)

    assert isinstance(step, Send) and step.discard and "Range" not in step.request.headers
    assert Write(0, TOTAL, ResumeState(URL, ETAG, LM, TOTAL)) == a.answer(200, full(Accept_Ranges="bytes"))


def test_served_split_finishes_with_a_rehash_of_the_file():
    """split_ended(True, n): Finish(rehash=total); check passes and the result has the whole size."""
    a = _split_attempt()

    step = a.split_ended(True, TOTAL)
    a.check()
    result = a.result(PATH)

    assert Finish(rehash=TOTAL) == step
    assert (TOTAL, TOTAL, ETAG, LM) == (result.size, result.received, result.etag, result.last_modified)


def test_resumed_split_continues_its_segments():
    """A part with segments resumes as Split(first=False); segments go to the job's URL; the end counts the part."""
    state = ResumeState(URL, ETAG, LM, TOTAL, ((0, 25_000, 25_000), (25_000, 50_000, 5_000), (50_000, 100_000, 0)))
    a = attempt(**SPLIT)

    begin = a.begin(60_000, state)
    request = a.segment_request(30_000, 50_000)
    end = a.split_ended(True, 70_000)
    a.check()
    result = a.result(PATH)

    assert (Split(state, first=False), Finish(rehash=TOTAL)) == (begin, end)
    assert (URL, "bytes=30000-49999", ETAG) == (request.url, request.headers["Range"], request.headers["If-Range"])
    assert (TOTAL, 70_000, ETAG, LM) == (result.size, result.received, result.etag, result.last_modified)


# --- --sync: 304 ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("current", "conditions"),
    [
        pytest.param(Validators(ETAG, LM), (ETAG, LM), id="both"),
        pytest.param(Validators(None, LM), (None, LM), id="last-modified"),
    ],
)
def test_sync_request_is_conditional(current, conditions):
    """Under --sync the GET carries If-None-Match and If-Modified-Since from the file there."""
    request = attempt(current=current).begin(0, None).request

    assert conditions == (request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"))


def test_sync_304_finishes_unchanged():
    """A 304 to the conditional GET: Finish(unchanged=True), and an UNCHANGED result with the known validators."""
    a = attempt(current=Validators(ETAG, LM))
    a.begin(0, None)

    step = a.answer(304, headers(ETag=ETAG))
    result = a.unchanged(PATH, 42)

    assert Finish(unchanged=True) == step
    assert (Status.UNCHANGED, str(PATH), 42, 0, URL, ETAG, LM) == (
        result.status, result.path, result.size, result.received, result.final_url, result.etag, result.last_modified)


def test_sync_200_replaces_the_file():
    """A 200 to the conditional GET (the file changed) is written from zero."""
    a = attempt(current=Validators(ETAG, LM))
    a.begin(0, None)

    assert Write(0, TOTAL, ResumeState(URL, '"v2"', LM, TOTAL)) == a.answer(200, full(ETag='"v2"'))


def test_sync_conditions_are_kept_across_a_redirect():
    """The conditional headers of --sync go along a redirect, like Range and If-Range."""
    a = attempt(current=Validators(ETAG, LM))
    a.begin(0, None)

    request = a.answer(302, moved(CDN)).request

    assert (ETAG, LM) == (request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"))


def test_304_to_an_unconditional_request_is_an_error():
    """A 304 when nothing was conditional is a status that cannot be used (not retryable)."""
    a = attempt()
    a.begin(0, None)

    with pytest.raises(HTTPStatusError, match="redirect not followed") as raised:
        a.answer(304, {})

    assert (304, False) == (raised.value.status, raised.value.retryable)


# --- 416 on a complete part ---------------------------------------------------------------------

def test_416_with_if_range_on_a_complete_part_finishes_it():
    """A 416 "bytes */T" to Range/If-Range when the part holds T bytes: Finish(rehash=T), nothing received."""
    a = attempt()
    a.begin(TOTAL, SAVED)

    step = a.answer(416, headers(Content_Range=f"bytes */{TOTAL}"))
    a.check()
    result = a.result(PATH)

    assert Finish(rehash=TOTAL) == step
    assert (TOTAL, 0) == (result.size, result.received)


def test_416_without_validator_is_proven_by_the_saved_size():
    """Without If-Range (weak ETag), the saved size equal to the 416's proves the part complete."""
    a = attempt()
    request = a.begin(TOTAL, ResumeState(URL, 'W/"v1"', None, TOTAL)).request

    assert "If-Range" not in request.headers
    assert Finish(rehash=TOTAL) == a.answer(416, headers(Content_Range=f"bytes */{TOTAL}"))


@pytest.mark.parametrize(
    ("state", "answer"),
    [
        pytest.param(SAVED, headers(Content_Range=f"bytes */{TOTAL + 5}"), id="other-size"),
        pytest.param(SAVED, headers(Content_Range=f"bytes */{TOTAL}", ETag='"v2"'), id="other-etag"),
        pytest.param(ResumeState(URL, 'W/"v1"', None, None), headers(Content_Range=f"bytes */{TOTAL}"), id="unproven"),
    ],
)
def test_416_that_does_not_prove_the_part_restarts(state, answer):
    """A 416 for another size or ETag, or unproven without If-Range and saved size: discard and GET again."""
    a = attempt()
    a.begin(TOTAL, state)

    step = a.answer(416, answer)

    assert isinstance(step, Send) and step.discard and "Range" not in step.request.headers


@pytest.mark.parametrize(
    ("have", "status", "answer"),
    [
        pytest.param(TOTAL, 416, headers(Content_Range=f"bytes */{TOTAL}"), id="416-complete"),
        pytest.param(HAVE, 206, partial(), id="206-without-last-modified"),
    ],
)
def test_resume_keeps_the_saved_validators_in_the_result(have, status, answer):
    """A file finished from a resumed part reports the saved ETag and Last-Modified when the answer omits them."""
    a = attempt()
    a.begin(have, SAVED)
    a.answer(status, answer)
    feed_all(a, BODY[have:])
    result = a.result(PATH)

    assert (ETAG, LM, 1_700_000_000.0) == (result.etag, result.last_modified, a.mtime)


# --- statuses and Retry-After -------------------------------------------------------------------

@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_seconds_is_carried_by_a_retryable_error(status):
    """A 503 or 429 with Retry-After: 7 raises a retryable HTTPStatusError with retry_after 7."""
    a = attempt()
    a.begin(0, None)

    with pytest.raises(HTTPStatusError) as raised:
        a.answer(status, headers(Retry_After="7"))

    assert (status, True, 7.0) == (raised.value.status, raised.value.retryable, raised.value.retry_after)


def test_retry_after_http_date_is_seconds_from_now():
    """A Retry-After HTTP-date two minutes ahead is carried as about 120 seconds."""
    a = attempt()
    a.begin(0, None)
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=120), usegmt=True)

    with pytest.raises(HTTPStatusError) as raised:
        a.answer(503, headers(Retry_After=when))

    assert 100 < raised.value.retry_after <= 120


def test_404_is_not_retryable():
    """A 404 raises an HTTPStatusError that is not retryable and names the status."""
    a = attempt()
    a.begin(0, None)

    with pytest.raises(HTTPStatusError, match="HTTP 404 Not Found") as raised:
        a.answer(404, headers(Retry_After="7"))

    assert (404, False) == (raised.value.status, raised.value.retryable)


def test_300_is_not_followed():
    """A 300 is not a redirect the machine follows: not retryable, and the reason names its Location."""
    a = attempt()
    a.begin(0, None)

    with pytest.raises(HTTPStatusError, match=r"HTTP 300 redirect not followed \(http://cdn.test") as raised:
        a.answer(300, moved(CDN))

    assert not raised.value.retryable


# --- the list's size= and sha256=, --max-filesize, the low-speed rule ---------------------------------

def test_announced_size_against_list_size_fails_at_answer():
    """A Content-Length other than the list's size= raises IntegrityError before any body."""
    a = attempt(Job(URL, size=TOTAL - 1))
    a.begin(0, None)

    with pytest.raises(IntegrityError) as raised:
        a.answer(200, full())

    assert (str(TOTAL - 1), str(TOTAL)) == (raised.value.expected, raised.value.actual)


def test_received_size_against_list_size_fails_at_check():
    """A body of unknown length that ends at another size than size= fails check."""
    a = attempt(Job(URL, size=TOTAL))
    a.begin(0, None)
    a.answer(200, {})
    feed_all(a, BODY[:-1])

    with pytest.raises(IntegrityError, match="size mismatch"):
        a.check()


def test_sha256_mismatch_fails_at_check():
    """A body whose digest is not the list's sha256= fails check, naming both digests."""
    a = attempt(Job(URL, checksum="sha256:" + "0" * 64))
    a.begin(0, None)
    a.answer(200, full())
    feed_all(a, BODY)

    with pytest.raises(IntegrityError) as raised:
        a.check()

    assert ("sha256:" + "0" * 64, "sha256:" + SHA) == (raised.value.expected, raised.value.actual)


def test_announced_size_over_max_filesize_is_refused_at_answer():
    """A Content-Length above --max-filesize is Refused before any body; the part is not spoiled."""
    a = attempt(max_filesize=TOTAL - 1)
    a.begin(0, None)

    with pytest.raises(Refused, match="larger than --max-filesize"):
        a.answer(200, full())

    assert not a.spoiled


def test_body_growing_past_max_filesize_is_refused_and_spoils_the_part():
    """A body of unknown length that grows past --max-filesize is Refused and the part spoiled."""
    a = attempt(max_filesize=1000)
    a.begin(0, None)
    a.answer(200, {})
    a.feed(BODY[:1000])

    with pytest.raises(Refused, match="grew past --max-filesize 1000"):
        a.feed(b"x")

    assert a.spoiled


def test_resumed_prefix_counts_against_max_filesize():
    """The bytes already in the part count: a resumed body is refused when the part plus it exceed the limit."""
    a = attempt(max_filesize=50)
    a.begin(HAVE, ResumeState(URL, ETAG, None, None))
    a.answer(206, headers(Content_Range=f"bytes {HAVE}-99/*", ETag=ETAG))
    a.count(50 - HAVE)

    with pytest.raises(Refused):
        a.count(1)


def test_low_speed_rule_raises_stall_timeout():
    """Under --speed-limit for --speed-time seconds, the next piece raises StallTimeout."""
    a = attempt(speed_limit=10**9, speed_time=0.05)
    a.begin(0, None)
    a.answer(200, full())
    a.feed(b"x")
    time.sleep(0.06)

    with pytest.raises(StallTimeout, match="too slow"):
        a.feed(b"x")


def test_low_speed_rule_off_with_speed_limit_zero():
    """--speed-limit 0 turns the rule off: a slow body is fed without error."""
    a = attempt(speed_limit=0, speed_time=0.05)
    a.begin(0, None)
    a.answer(200, full())
    a.feed(b"x")
    time.sleep(0.06)
    a.feed(b"x")

    assert 2 == a.received


# --- Content-Disposition --------------------------------------------------------------------------

DISPOSITION = headers(Content_Disposition='attachment; filename="report.pdf"')


@pytest.mark.parametrize(
    ("job", "config", "expected"),
    [
        pytest.param(Job(URL), {"content_disposition": True}, "report.pdf", id="used"),
        pytest.param(Job(URL, out="mine.bin"), {"content_disposition": True}, None, id="out-wins"),
        pytest.param(Job(URL), {}, None, id="off"),
    ],
)
def test_content_disposition_names_the_file_only_when_asked(job, config, expected):
    """With --content-disposition the server's file name is kept, unless the job has out=."""
    a = attempt(job, **config)
    a.begin(0, None)
    a.answer(200, {**full(10), **DISPOSITION})

    assert expected == a.disposition


def test_206_with_another_last_modified_restarts_when_the_date_is_the_validator():
    """A server that ignores If-Range and sends a range of a newer version (another
    Last-Modified) is caught when the saved validator is a date: the part restarts."""
    a = attempt()
    a.begin(HAVE, ResumeState(URL, None, LM, TOTAL))
    answer = {**partial(etag=""), "Last-Modified": "Wed, 15 Nov 2023 10:00:00 GMT"}
    del answer["ETag"]
    step = a.answer(206, answer)
    assert isinstance(step, Send) and step.discard and "Range" not in step.request.headers


# --- any checksum algorithm, and the digests a server states -------------------------------------

def _b64(algorithm: str, body: bytes = BODY) -> str:
    return base64.b64encode(hashlib.new(algorithm, body).digest()).decode("ascii")


def _hex(algorithm: str, body: bytes = BODY) -> str:
    return hashlib.new(algorithm, body).hexdigest()


def _run(a: Attempt, status: int, answer: dict[str, str], body: bytes = BODY) -> Step:
    a.begin(0, None)
    step = a.answer(status, answer)
    feed_all(a, body)
    return step


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512", "blake2b"])
def test_each_algorithm_of_the_list_is_checked_and_reported(algorithm):
    a = attempt(Job(URL, checksum=f"{algorithm}:{_hex(algorithm)}"))
    _run(a, 200, full())
    a.check()
    assert a.result(PATH).checksum == f"{algorithm}:{_hex(algorithm)}"


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha512", "blake2b"])
def test_a_wrong_digest_of_each_algorithm_fails(algorithm):
    wrong = "0" * len(_hex(algorithm))
    a = attempt(Job(URL, checksum=f"{algorithm}:{wrong}"))
    _run(a, 200, full())
    with pytest.raises(IntegrityError, match=f"^{algorithm} mismatch: expected {wrong}"):
        a.check()


@pytest.mark.parametrize(("name", "value", "algorithm"), [
    ("Repr-Digest", f"sha-256=:{_b64('sha256')}:", "sha256"),
    ("Repr-Digest", f"sha-512=:{_b64('sha512')}:, sha-256=:{_b64('sha256')}:", "sha512"),
    ("Repr-Digest", f"unixsum=:AAAA:, sha-256=:{_b64('sha256')}:", "sha256"),
    ("Digest", f"SHA-256={_b64('sha256')}", "sha256"),
    ("Digest", f"MD5={_b64('md5')}", "md5"),
    ("Digest", f"md5={_b64('md5')},SHA-256={_b64('sha256')}", "sha256"),
    ("Content-MD5", _b64("md5"), "md5"),
    ("x-goog-hash", f"crc32c=n03x6A==, md5={_b64('md5')}", "md5"),
])
def test_a_right_server_digest_passes_and_is_the_checksum_reported(name, value, algorithm):
    a = attempt()
    _run(a, 200, full(**{name.replace("-", "_"): value}))
    a.check()
    assert a.result(PATH).checksum == f"{algorithm}:{_hex(algorithm)}"


@pytest.mark.parametrize(("name", "value"), [
    ("Repr-Digest", f"sha-256=:{_b64('sha256', b'other')}:"),
    ("Digest", f"SHA-256={_b64('sha256', b'other')}"),
    ("Digest", f"MD5={_b64('md5', b'other')}"),
    ("Content-MD5", _b64("md5", b"other")),
    ("x-goog-hash", f"crc32c=n03x6A==,md5={_b64('md5', b'other')}"),
])
def test_a_wrong_server_digest_fails_naming_the_header(name, value):
    a = attempt()
    _run(a, 200, full(**{name.replace("-", "_"): value}))
    with pytest.raises(IntegrityError, match=rf"mismatch \(the server's {name}\)"):
        a.check()


def test_no_server_digest_turns_the_check_off():
    a = attempt(server_digest=False)
    _run(a, 200, full(Repr_Digest=f"sha-256=:{_b64('sha256', b'other')}:"))
    a.check()
    assert a.hasher is None and a.result(PATH).checksum is None


@pytest.mark.parametrize("value", ["sha-256=:not base64!:", "sha-256=:AAAA:", "sha-256=abc", "garbage", ""])
def test_a_digest_that_cannot_be_read_is_ignored(value):
    """A malformed or wrong-length value states nothing: no check, no failure."""
    a = attempt()
    _run(a, 200, full(Repr_Digest=value))
    a.check()
    assert a.hasher is None


def test_an_etag_is_never_taken_for_a_digest():
    """S3's ETags look like MD5s (and multipart ones are not): never checked."""
    a = attempt()
    _run(a, 200, full(ETag='"' + "0" * 32 + '"'))
    a.check()
    assert a.hasher is None


def test_the_list_checksum_and_a_server_digest_in_another_algorithm_are_both_checked():
    a = attempt(Job(URL, checksum="md5:" + _hex("md5")))
    _run(a, 200, full(Repr_Digest=f"sha-256=:{_b64('sha256', b'other')}:"))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        a.check()
    b = attempt(Job(URL, checksum="md5:" + _hex("md5")))
    _run(b, 200, full(Repr_Digest=f"sha-256=:{_b64('sha256')}:"))
    b.check()
    assert b.result(PATH).checksum == "md5:" + _hex("md5")  # the list's is the one recorded


def test_a_resume_checks_a_whole_representation_digest_over_prefix_and_body():
    """A 206's Repr-Digest is of the whole file: the engine hashes the prefix into the hasher."""
    a = attempt()
    a.begin(HAVE, SAVED)
    step = a.answer(206, {**partial(), "Repr-Digest": f"sha-256=:{_b64('sha256')}:"})
    assert isinstance(step, Write) and step.offset == HAVE and a.hasher is not None
    a.hasher.update(BODY[:HAVE])  # what Part.ready does with the prefix
    feed_all(a, BODY[HAVE:])
    a.check()


def test_content_md5_of_a_206_says_nothing_of_the_whole_file():
    """Content-MD5 is of the message body: after a 206 it is not checked."""
    a = attempt()
    a.begin(HAVE, SAVED)
    a.answer(206, {**partial(), "Content-MD5": _b64("md5")})
    assert a.hasher is None


def test_repeated_digest_header_lines_of_a_multidict_are_all_read():
    """GCS sends x-goog-hash twice (crc32c, then md5): a multidict's every value counts."""
    from multidict import CIMultiDict

    answer = CIMultiDict(full())
    answer.add("x-goog-hash", "crc32c=n03x6A==")
    answer.add("x-goog-hash", f"md5={_b64('md5', b'other')}")
    a = attempt()
    _run(a, 200, answer)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="x-goog-hash"):
        a.check()
