"""Unit tests for downloader.storage: the part, its resume state, the running hash and the atomic finish,
driven by an Attempt as the engines drive them (without the network)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from requests.structures import CaseInsensitiveDict

from downloader.attempt import Attempt, Finish, Send, Split, Step, Write
from downloader.config import Config
from downloader.core import Request, ResumeState, Validators
from downloader.errors import BodyIncomplete, HTTPStatusError, IntegrityError, InvalidJob, LocalIOError, PartBusy, StallTimeout
from downloader.jobs import Job, Status
from downloader.naming import MAX_NAME_BYTES, output_path
from downloader.storage import Part, conclude, existing_result, write_all

URL = "http://example.test/data/f.bin"
BODY = b"0123456789abcdefghij" * 4000  # 80,000 bytes: more than a small body (stored at once, without state)
HAVE = 8
ETAG = '"v1"'
LM = "Tue, 14 Nov 2023 22:13:20 GMT"
SHA = hashlib.sha256(BODY).hexdigest()


def headers(**fields: str) -> CaseInsensitiveDict:
    """Response headers as a case-insensitive mapping; underscores become dashes."""
    return CaseInsensitiveDict({name.replace("_", "-"): value for name, value in fields.items()})


def full_answer(body: bytes = BODY, etag: str = ETAG) -> CaseInsensitiveDict:
    return headers(Content_Length=str(len(body)), ETag=etag, Last_Modified=LM)


def partial_answer(start: int = HAVE, total: int = len(BODY), etag: str = ETAG) -> CaseInsensitiveDict:
    return headers(Content_Range=f"bytes {start}-{total - 1}/{total}", Content_Length=str(total - start), ETag=etag)


class Transfer:
    """What an engine does with an Attempt and a Part, minus the network: the steps are
    carried out on the part as the engines carry them out."""

    def __init__(self, job: Job, path: Path, config: Config, *, current: Validators | None = None) -> None:
        self.attempt = Attempt(job, config, current=current)
        self.file = Part(path, job, config.dest)
        self.part, self.state_file = Path(self.file.part), Path(self.file.state_file)
        self.step: Step | None = None
        self.position = 0

    def prepare(self) -> Request:
        """Open the part (first time) or carry out a Send step; the request to send."""
        if self.step is None:
            self.step = self.attempt.begin(*self.file.open())
        assert isinstance(self.step, Send)
        if self.step.discard:
            self.file.discard()
        return self.step.request

    def accept(self, status: int, answer: object) -> Step:
        """The answer's step, with the part made ready for a body as the engines do."""
        self.step = self.attempt.answer(status, answer)
        if isinstance(self.step, Write):
            self.file.ready(self.step, self.attempt.hasher)
            self.position = self.step.offset
        elif isinstance(self.step, Send) and self.step.discard:
            self.file.discard()
        return self.step

    def feed(self, chunk: bytes) -> None:
        write_all(self.file.fd, chunk, self.position)
        self.position += len(chunk)
        self.attempt.feed(chunk)

    def finish(self):
        step = self.step if isinstance(self.step, Finish) else self.attempt.ended()
        return conclude(self.attempt, self.file, step)

    def discard(self) -> None:
        self.file.discard()

    def close(self) -> None:
        self.file.close(discard=self.attempt.spoiled)


def transfer(tmp_path: Path, job: Job | None = None, **config: object) -> Transfer:
    """A Transfer for ``job`` (default: URL) into tmp_path/f.bin."""
    job = job or Job(URL)
    return Transfer(job, tmp_path / "f.bin", Config(dest=tmp_path, **config))


def leave_part(t: Transfer, data: bytes = BODY[:HAVE], state: ResumeState | None = None, state_text: str | None = None) -> None:
    """Put a part (and optionally its state) on disk, as an interrupted earlier run would."""
    t.part.write_bytes(data)
    if state is not None:
        t.state_file.write_text(state.dumps(), encoding="utf-8")
    elif state_text is not None:
        t.state_file.write_text(state_text, encoding="utf-8")


def receive(t: Transfer, *chunks: bytes) -> None:
    """Do what an engine does with an accepted body: write each chunk where the step says and feed it."""
    for chunk in chunks:
        t.feed(chunk)


SAVED = ResumeState(URL, ETAG, LM, len(BODY))


# --- a fresh download -----------------------------------------------------------------

def test_fresh_prepare_plans_plain_get(tmp_path):
    """With nothing on disk, prepare plans a GET without Range."""
    request = transfer(tmp_path).prepare()
    assert "Range" not in request.headers and "If-Range" not in request.headers
    assert request.offset == 0 and request.headers["Accept-Encoding"] == "identity"


def test_prepare_sends_configured_user_agent(tmp_path):
    """The Config's user agent is in the planned request."""
    assert transfer(tmp_path, user_agent="tester/9").prepare().headers["User-Agent"] == "tester/9"


def test_prepare_creates_the_part_and_its_directories(tmp_path):
    """prepare makes the directories of an out= path and the part, before the request goes out."""
    job = Job(URL, out="a/b/c.bin")
    t = Transfer(job, output_path(job, tmp_path), Config(dest=tmp_path))
    t.prepare()
    assert (tmp_path / "a" / "b" / "c.bin.part").is_file()
    t.close()


def test_state_file_is_written_on_accept_before_any_body(tmp_path):
    """Right after accepting a 200, the state file exists and describes the answer; no body byte is written yet."""
    t = transfer(tmp_path)
    t.prepare()
    step = t.accept(200, full_answer())
    assert isinstance(step, Write) and step.offset == 0
    assert ResumeState.loads(t.state_file.read_text(encoding="utf-8"), URL) == SAVED
    assert b"" == t.part.read_bytes()  # created empty, and locked, by prepare


def test_small_body_is_stored_whole_without_a_state_file(tmp_path):
    """A body of known length up to SMALL_BODY is one Write(whole=True): no state file, one write."""
    t = transfer(tmp_path)
    t.prepare()
    step = t.accept(200, full_answer(BODY[:100]))
    assert isinstance(step, Write) and step.whole and not t.state_file.exists()
    t.file.store(step, BODY[:100])
    t.attempt.feed(BODY[:100])
    assert t.finish().size == 100 and (tmp_path / "f.bin").read_bytes() == BODY[:100]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_state_file_is_named_after_the_final_name(tmp_path):
    """Part and state sit beside the final file as NAME.part and NAME.part.state."""
    t = transfer(tmp_path)
    assert (t.part, t.state_file) == (tmp_path / "f.bin.part", tmp_path / "f.bin.part.state")


def test_state_file_write_leaves_no_temporary_file(tmp_path):
    """Saving the state (new file, then rename) leaves only the state file."""
    t = transfer(tmp_path)
    t.prepare()
    t.accept(200, full_answer())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin.part", "f.bin.part.state"]


def test_fresh_download_finishes_under_final_name(tmp_path):
    """A whole body is renamed to the final name; the part and the state are gone."""
    t = transfer(tmp_path)
    t.prepare()
    step = t.accept(200, full_answer())
    assert isinstance(step, Write) and step.offset == 0
    receive(t, BODY[:5], BODY[5:])
    result = t.finish()
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    assert (result.status, result.path, result.size, result.received, result.checksum) == (
        Status.DOWNLOADED, str(tmp_path / "f.bin"), len(BODY), len(BODY), None)


def test_fresh_download_with_sha256_reports_digest(tmp_path):
    """With a sha256 in the list, finish checks it and reports the digest."""
    t = transfer(tmp_path, Job(URL, checksum="sha256:" + SHA))
    t.prepare()
    t.accept(200, full_answer())
    receive(t, BODY)
    assert t.finish().checksum == "sha256:" + SHA


def test_fresh_download_without_length_finishes(tmp_path):
    """A body of unknown length is accepted as it ends."""
    t = transfer(tmp_path)
    t.prepare()
    t.accept(200, headers())
    receive(t, BODY)
    assert t.finish().size == len(BODY)
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_empty_file_finishes(tmp_path):
    """A 0-byte file is finished with no body chunk."""
    t = transfer(tmp_path)
    t.prepare()
    t.accept(200, headers(Content_Length="0"))
    receive(t, b"")
    assert t.finish().size == 0
    assert (tmp_path / "f.bin").read_bytes() == b""


def test_finish_replaces_an_older_final_file(tmp_path):
    """The rename atomically replaces whatever was under the final name."""
    (tmp_path / "f.bin").write_bytes(b"old")
    t = transfer(tmp_path)
    t.prepare()
    t.accept(200, full_answer())
    receive(t, BODY)
    t.finish()
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_long_final_name_can_save_its_state(tmp_path):
    """A URL whose name is shortened to MAX_NAME_BYTES still gets its state file written."""
    job = Job("http://example.test/" + "n" * 400 + ".bin")
    path = output_path(job, tmp_path)
    assert len(path.name.encode()) == MAX_NAME_BYTES
    t = Transfer(job, path, Config(dest=tmp_path))
    t.prepare()
    t.accept(200, full_answer())
    assert t.state_file.exists()


# --- resuming -----------------------------------------------------------------------------

def test_resume_prepare_asks_for_the_rest(tmp_path):
    """A part with a saved strong ETag is continued with Range and If-Range."""
    t = transfer(tmp_path)
    leave_part(t, state=SAVED)
    request = t.prepare()
    assert (request.headers["Range"], request.headers["If-Range"], request.offset) == (f"bytes={HAVE}-", ETAG, HAVE)


def test_resume_appends_and_finishes_whole_file(tmp_path):
    """A 206 from the part's end is appended; the final file is the whole body."""
    t = transfer(tmp_path)
    leave_part(t, state=SAVED)
    t.prepare()
    step = t.accept(206, partial_answer())
    assert isinstance(step, Write) and step.offset == HAVE
    receive(t, BODY[HAVE:])
    result = t.finish()
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert (result.size, result.received) == (len(BODY), len(BODY) - HAVE)
    assert not t.part.exists() and not t.state_file.exists()


def test_resume_keeps_the_state_file_unchanged(tmp_path):
    """Accepting a 206 does not rewrite the saved state."""
    t = transfer(tmp_path)
    leave_part(t, state=SAVED)
    t.prepare()
    t.accept(206, partial_answer())
    assert t.state_file.read_text(encoding="utf-8") == SAVED.dumps()


def test_resume_with_sha256_hashes_the_existing_prefix(tmp_path):
    """On resume the hash is primed with the part, so the digest covers the whole file."""
    t = transfer(tmp_path, Job(URL, checksum="sha256:" + SHA))
    leave_part(t, state=SAVED)
    t.prepare()
    t.accept(206, partial_answer())
    receive(t, BODY[HAVE:])
    result = t.finish()
    assert result.checksum == "sha256:" + SHA
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_resume_with_sha256_detects_a_corrupt_prefix(tmp_path):
    """A wrong byte in the part already on disk makes the digest fail."""
    t = transfer(tmp_path, Job(URL, checksum="sha256:" + SHA))
    leave_part(t, data=b"X" + BODY[1:HAVE], state=SAVED)
    t.prepare()
    t.accept(206, partial_answer())
    receive(t, BODY[HAVE:])
    with pytest.raises(IntegrityError):
        t.finish()


def test_resume_with_last_modified_only(tmp_path):
    """A saved Last-Modified is sent as If-Range and a matching 206 is appended."""
    t = transfer(tmp_path)
    leave_part(t, state=ResumeState(URL, None, LM, len(BODY)))
    request = t.prepare()
    assert request.headers["If-Range"] == LM
    assert t.accept(206, partial_answer(etag="")).offset == HAVE


def test_resume_with_weak_etag_sends_no_weak_if_range(tmp_path):
    """A saved weak ETag is never sent in If-Range."""
    t = transfer(tmp_path)
    leave_part(t, state=ResumeState(URL, 'W/"v1"', None, len(BODY)))
    request = t.prepare()
    assert request.headers["Range"] == f"bytes={HAVE}-"
    assert "If-Range" not in request.headers


def test_complete_part_is_finished_on_416(tmp_path):
    """A 416 with bytes */T when the part holds T bytes finishes the part without a body."""
    t = transfer(tmp_path, Job(URL, checksum="sha256:" + SHA))
    leave_part(t, data=BODY, state=SAVED)
    t.prepare()
    step = t.accept(416, headers(Content_Range=f"bytes */{len(BODY)}"))
    assert step == Finish(rehash=len(BODY))
    result = t.finish()
    assert (result.size, result.received, result.checksum) == (len(BODY), 0, "sha256:" + SHA)
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert not t.state_file.exists()


def test_200_to_a_resume_truncates_the_part(tmp_path):
    """A 200 answering a Range request drops the part and saves the new version's state."""
    t = transfer(tmp_path)
    leave_part(t, data=b"OLDOLDOL", state=SAVED)
    t.prepare()
    step = t.accept(200, full_answer(etag='"v2"'))
    assert isinstance(step, Write) and step.offset == 0
    assert b"" == t.part.read_bytes()
    assert ResumeState.loads(t.state_file.read_text(encoding="utf-8"), URL).etag == '"v2"'
    receive(t, BODY)
    t.finish()
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_200_to_a_resume_with_sha256_hashes_only_the_new_body(tmp_path):
    """After a truncating 200 the digest is over the new body alone, not the dropped part."""
    t = transfer(tmp_path, Job(URL, checksum="sha256:" + SHA))
    leave_part(t, data=b"OLDOLDOL", state=SAVED)
    t.prepare()
    t.accept(200, full_answer())
    receive(t, BODY)
    assert t.finish().checksum == "sha256:" + SHA


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        pytest.param(206, partial_answer(start=0), id="206-wrong-start"),
        pytest.param(206, partial_answer(etag='"v2"'), id="206-etag-changed"),
        pytest.param(206, partial_answer(total=30), id="206-size-changed"),
        pytest.param(206, headers(), id="206-no-content-range"),
        pytest.param(416, headers(Content_Range="bytes */30"), id="416-other-size"),
    ],
)
def test_restart_empties_part_and_removes_state(tmp_path, status, answer):
    """A RESTART empties the part (kept locked) and removes its state; the next request is a plain GET."""
    t = transfer(tmp_path)
    leave_part(t, state=SAVED)
    t.prepare()
    step = t.accept(status, answer)
    assert isinstance(step, Send) and step.discard
    assert b"" == t.part.read_bytes() and not t.state_file.exists()
    assert "Range" not in t.prepare().headers
    t.close()
    assert not t.part.exists()


def test_transfer_can_restart_and_complete_in_one_attempt(tmp_path):
    """After a RESTART the same Transfer plans a plain GET and finishes from a 200."""
    t = transfer(tmp_path, Job(URL, checksum="sha256:" + SHA))
    leave_part(t, state=SAVED)
    t.prepare()
    t.accept(206, partial_answer(start=0))
    t.prepare()
    t.accept(200, full_answer())
    receive(t, BODY)
    assert t.finish().checksum == "sha256:" + SHA
    assert (tmp_path / "f.bin").read_bytes() == BODY


# --- damaged or ignored state ---------------------------------------------------------------

@pytest.mark.parametrize(
    "state_text",
    [
        pytest.param(None, id="missing"),
        pytest.param("{damaged", id="damaged-json"),
        pytest.param("", id="empty"),
        pytest.param(ResumeState("http://example.test/other.bin", ETAG, None, 20).dumps(), id="other-url"),
        pytest.param(SAVED.dumps().replace('"version": 1', '"version": 9'), id="other-version"),
    ],
)
def test_unusable_state_means_plain_get(tmp_path, state_text):
    """A part whose state is missing, damaged or foreign is not resumed: the request has no Range."""
    t = transfer(tmp_path)
    leave_part(t, state_text=state_text)
    request = t.prepare()
    assert "Range" not in request.headers and "If-Range" not in request.headers
    assert request.offset == 0


def test_state_not_utf8_means_plain_get(tmp_path):
    """A state file of non-UTF-8 bytes is treated as damaged."""
    t = transfer(tmp_path)
    leave_part(t)
    t.state_file.write_bytes(b"\xff\xfe\x00{")
    assert "Range" not in t.prepare().headers


def test_state_that_is_a_directory_means_plain_get(tmp_path):
    """An unreadable state (a directory in its place) is treated as damaged."""
    t = transfer(tmp_path)
    leave_part(t)
    t.state_file.mkdir()
    assert "Range" not in t.prepare().headers


def test_unusable_state_then_200_overwrites_the_part(tmp_path):
    """After a plain GET for an unresumable part, the 200 body replaces the part."""
    t = transfer(tmp_path)
    leave_part(t, data=b"OLDOLDOL", state_text="{damaged")
    t.prepare()
    t.accept(200, full_answer())
    receive(t, BODY)
    t.finish()
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_resume_disabled_ignores_the_part(tmp_path):
    """With Config(resume=False) a part with a valid state is not continued."""
    t = transfer(tmp_path, resume=False)
    leave_part(t, state=SAVED)
    request = t.prepare()
    assert "Range" not in request.headers and request.offset == 0
    t.accept(200, full_answer())
    receive(t, BODY)
    t.finish()
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_empty_part_is_not_resumed(tmp_path):
    """A 0-byte part with a state is fetched with a plain GET."""
    t = transfer(tmp_path)
    leave_part(t, data=b"", state=SAVED)
    assert "Range" not in t.prepare().headers


# --- failures at the end ------------------------------------------------------------------

def test_short_body_keeps_the_part_for_resume(tmp_path):
    """A body shorter than announced raises BodyIncomplete and keeps part and state."""
    t = transfer(tmp_path)
    t.prepare()
    t.accept(200, full_answer())
    receive(t, BODY[:HAVE])
    with pytest.raises(BodyIncomplete):
        t.finish()
    assert t.part.read_bytes() == BODY[:HAVE]
    assert t.state_file.exists()
    assert not (tmp_path / "f.bin").exists()


def test_short_body_then_next_attempt_resumes(tmp_path):
    """The part kept after a short body is resumed by the next Transfer."""
    first = transfer(tmp_path)
    first.prepare()
    first.accept(200, full_answer())
    receive(first, BODY[:HAVE])
    with pytest.raises(BodyIncomplete):
        first.finish()
    first.close()
    second = transfer(tmp_path)
    request = second.prepare()
    assert (request.headers["Range"], request.headers["If-Range"]) == (f"bytes={HAVE}-", ETAG)


def test_sha256_mismatch_deletes_part_and_leaves_no_final_file(tmp_path):
    """A whole body with the wrong digest raises IntegrityError and leaves nothing behind."""
    t = transfer(tmp_path, Job(URL, checksum="sha256:" + "0" * 64))
    t.prepare()
    t.accept(200, full_answer())
    receive(t, BODY)
    with pytest.raises(IntegrityError) as info:
        t.finish()
    assert (info.value.expected, info.value.actual) == ("sha256:" + "0" * 64, "sha256:" + SHA)
    t.close()
    assert list(tmp_path.iterdir()) == []


def test_body_longer_than_announced_is_integrity_error(tmp_path):
    """More bytes than Content-Length raise IntegrityError and delete the part."""
    t = transfer(tmp_path)
    t.prepare()
    t.accept(200, full_answer())
    receive(t, BODY + b"extra")
    with pytest.raises(IntegrityError):
        t.finish()
    t.close()
    assert list(tmp_path.iterdir()) == []


def test_list_size_mismatch_without_length_is_integrity_error(tmp_path):
    """A body of unknown length that ends at another size than size= fails and leaves no file."""
    t = transfer(tmp_path, Job(URL, size=len(BODY) + 1))
    t.prepare()
    t.accept(200, headers())
    receive(t, BODY)
    with pytest.raises(IntegrityError):
        t.finish()
    t.close()
    assert not (tmp_path / "f.bin").exists() and not t.part.exists()


def test_announced_size_other_than_list_size_fails_on_accept(tmp_path):
    """A Content-Length other than size= raises IntegrityError before any state is written."""
    t = transfer(tmp_path, Job(URL, size=99))
    t.prepare()
    with pytest.raises(IntegrityError):
        t.accept(200, full_answer())
    assert not t.state_file.exists()


def test_error_status_raises_and_leaves_part(tmp_path):
    """A 503 raises HTTPStatusError and does not touch the part or its state."""
    t = transfer(tmp_path)
    leave_part(t, state=SAVED)
    t.prepare()
    with pytest.raises(HTTPStatusError):
        t.accept(503, headers(Retry_After="1"))
    assert t.part.read_bytes() == BODY[:HAVE] and t.state_file.exists()


def test_discard_removes_part_and_state(tmp_path):
    """discard empties the part and deletes the state, twice over; close then removes the empty part."""
    t = transfer(tmp_path)
    leave_part(t, state=SAVED)
    t.prepare()
    t.discard()
    t.discard()
    t.close()
    assert list(tmp_path.iterdir()) == []


def test_second_transfer_on_a_locked_part_is_busy(tmp_path):
    """While one Transfer holds the part, another (as from a second run) gets PartBusy, and can go on after close."""
    first = transfer(tmp_path)
    leave_part(first, state=SAVED)
    first.prepare()
    with pytest.raises(PartBusy):
        transfer(tmp_path).prepare()
    first.close()
    assert "Range" in transfer(tmp_path).prepare().headers


def test_close_removes_a_part_created_for_nothing(tmp_path):
    """A part created by prepare but never written (the server said 404) is removed by close."""
    t = transfer(tmp_path)
    t.prepare()
    with pytest.raises(HTTPStatusError):
        t.accept(404, headers())
    t.close()
    assert list(tmp_path.iterdir()) == []


def test_low_speed_rule_raises_stall_timeout(tmp_path):
    """A body slower than speed_limit for speed_time raises StallTimeout from feed."""
    import time

    t = transfer(tmp_path, speed_limit=1000, speed_time=0.05)
    t.prepare()
    t.accept(200, full_answer())
    t.feed(b"x")
    time.sleep(0.06)
    with pytest.raises(StallTimeout):
        t.feed(b"y")


def test_unwritable_destination_is_local_io_error(tmp_path):
    """A destination whose parent is a file raises LocalIOError from prepare."""
    (tmp_path / "blocker").write_bytes(b"")
    job = Job(URL, out="blocker/f.bin")
    t = Transfer(job, output_path(job, tmp_path), Config(dest=tmp_path))
    with pytest.raises(LocalIOError):
        t.prepare()


# --- existing_result -------------------------------------------------------------------------

def test_existing_result_none_when_absent(tmp_path):
    """No final file means no early result."""
    assert existing_result(Job(URL), tmp_path / "f.bin") is None


def test_existing_result_skips_present_file(tmp_path):
    """A file already under its final name is skipped with its size."""
    (tmp_path / "f.bin").write_bytes(BODY)
    result = existing_result(Job(URL, origin="urls.txt:1"), tmp_path / "f.bin")
    assert (result.status, result.size, result.received, result.path, result.origin) == (
        Status.SKIPPED, len(BODY), 0, str(tmp_path / "f.bin"), "urls.txt:1")


def test_existing_result_with_matching_list_size_skips(tmp_path):
    """A present file of the list's size= is skipped."""
    (tmp_path / "f.bin").write_bytes(BODY)
    assert existing_result(Job(URL, size=len(BODY)), tmp_path / "f.bin").status is Status.SKIPPED


def test_existing_result_size_mismatch_is_invalid_and_leaves_file(tmp_path):
    """A present file with another size than size= raises InvalidJob and is left untouched."""
    (tmp_path / "f.bin").write_bytes(BODY)
    with pytest.raises(InvalidJob) as info:
        existing_result(Job(URL, size=5), tmp_path / "f.bin")
    assert "size=5" in str(info.value)
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_existing_result_directory_is_invalid(tmp_path):
    """A directory under the final name raises InvalidJob."""
    (tmp_path / "f.bin").mkdir()
    with pytest.raises(InvalidJob):
        existing_result(Job(URL), tmp_path / "f.bin")


def test_existing_result_ignores_a_part(tmp_path):
    """A part alone is not a finished file."""
    (tmp_path / "f.bin.part").write_bytes(BODY)
    assert existing_result(Job(URL), tmp_path / "f.bin") is None


def test_an_unchanged_file_or_a_redirect_leaves_no_part(tmp_path):
    """A 304 to a --sync request and a redirect write nothing: no part is left behind."""
    (tmp_path / "file.bin").write_bytes(b"old")
    unchanged = Transfer(Job(URL), tmp_path / "file.bin", Config(dest=tmp_path),
                         current=Validators('"v1"', None))
    unchanged.prepare()
    unchanged.accept(304, {"ETag": '"v1"'})
    result = unchanged.finish()
    unchanged.close()
    moved = transfer(tmp_path)
    moved.prepare()
    moved.accept(302, {"Location": "http://example.org/elsewhere.bin"})
    moved.close()

    assert Status.UNCHANGED == result.status
    assert ["file.bin"] == sorted(p.name for p in tmp_path.iterdir())
