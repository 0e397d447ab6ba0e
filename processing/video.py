"""Video: the only module that runs ffprobe and ffmpeg.

Hostile input (SECURITY_CHECKLIST BF-12..BF-14):
* argv lists, never a shell; every run has a wall-clock timeout, and CPU-time and
  address-space limits set in the child (``prlimit`` wraps the command and sets the
  limits before ffmpeg's first instruction);
* a child never outlives its worker (issue 14 item 5): it runs in its own process
  group, killed whole on timeout, cancellation and exit, and it is born with the
  parent-death signal set to SIGKILL (``prctl(PR_SET_PDEATHSIG)`` in ``preexec_fn``,
  one async-signal-safe libc call through a ctypes function resolved beforehand; it
  survives the exec of prlimit and ffmpeg), so a kill -9 of the worker kills it too;
* ``-nostdin`` and ``-protocol_whitelist file,pipe`` on every input: no network, no
  ``concat:``/``subfile:``/``http:`` tricks;
* the demuxer is forced with ``-f`` from an allowlist chosen by our magic-byte sniff
  (mov, avi, matroska, mpegts): the HLS, concat, ffconcat and image2 playlist demuxers
  can never be picked by content probing. The probed ``format_name`` is checked against
  the allowlist before anything is decoded;
* the input is a file named ``input`` in a private temporary directory (the worker's
  cwd for the child), passed as ``file:input`` so no name can be read as a protocol;
* a pre-check refuses dimensions, durations, packet and stream counts over our limits
  (BF-14);
* work is bounded by the real input, never by what it claims (BF-19): ffprobe counts
  the packets the file really holds (``-count_packets``), the proxy keeps the input's
  timing (``-fps_mode passthrough``: a constant-rate output fills a timestamp gap with
  duplicated frames, so ten frames whose last one claims 5.5 hours became hundreds of
  thousands) and writes at most that many frames, and the time and CPU limits come
  from the packet count and the file's size, capped by the job's budget, never from
  the declared duration;
* derivatives carry nothing of the original's but pixels and sound (BF-18): only the
  main video stream and the first audio stream are mapped, by index (no cover art,
  subtitle, data or attachment stream), ``-map_metadata -1 -map_chapters -1`` drop
  tags and chapters, ``+bitexact`` keeps muxer and encoder version tags out, and the
  H.264 SEI units (where x264 writes its version and options) are removed. The tool
  and its version are recorded in the custody event instead.
Everything ffprobe reports is untrusted data: length-capped, never interpreted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

# MIME type (from storage.sniff) -> the only demuxer allowed to read it.
DEMUXER_FOR_MIME: dict[str, str] = {
    "video/mp4": "mov",
    "video/quicktime": "mov",
    "video/3gpp": "mov",
    "video/x-msvideo": "avi",
    "video/x-matroska": "matroska",
    "video/webm": "matroska",
    "video/mp2t": "mpegts",
}
# The format_name ffprobe reports for each allowed demuxer.
ALLOWED_FORMAT_NAMES: frozenset[str] = frozenset(
    {"mov,mp4,m4a,3gp,3g2,mj2", "avi", "matroska,webm", "mpegts"}
)
PROTOCOLS = "file,pipe"

MAX_SIDE_PX = 8192
MAX_DURATION_SECONDS = 6 * 3600
MAX_STREAMS = 16
MAX_VIDEO_PACKETS = 6 * 3600 * 120  # six hours at 120 frames per second
PROXY_LONG_SIDE = 1920
PROXY_SHORT_SIDE = 1080
PROBE_TIMEOUT_SECONDS = 30
# -count_packets demuxes the whole file: its time follows the size (a slow disk reads
# 50 MiB/s), so a large honest file is not refused for the probe's own timeout.
PROBE_SECONDS_PER_MIB = 1 / 50
PROBE_MEMORY_BYTES = 2 << 30
FFMPEG_MEMORY_BYTES = 4 << 30
MAX_TEXT = 200
STDERR_TAIL = 2000
# Transcode limits from the real input (BF-19): a base, plus per video packet (a 1080p
# frame of noisy phone footage takes ~0.05 s on this class of machine: 20x headroom),
# plus per MiB of input (decoding cost follows the bytes). Capped by the job's budget.
LIMIT_BASE_SECONDS = 60.0
LIMIT_SECONDS_PER_PACKET = 1.0
LIMIT_SECONDS_PER_MIB = 2.0
POSTER_SECONDS = 120.0
# Both outputs are muxed without version tags; ffmpeg's own are for the custody event.
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]


class VideoRejected(Exception):
    """Not a video we accept: unknown/forbidden container, undecodable, over limits."""

    code = "ERR_VIDEO_REJECTED"


class ToolFailed(Exception):
    """ffmpeg ran and failed on this input (deterministic: do not retry)."""

    code = "ERR_TOOL_FAILED"


class ToolTimeout(Exception):
    """ffmpeg/ffprobe ran out of wall-clock or CPU time (may be load: retried)."""

    code = "ERR_TOOL_TIMEOUT"


class Cancelled(Exception):
    """The worker is shutting down or lost its lease: the child was killed."""


@dataclass(frozen=True)
class RunResult:
    argv: list[str]  # the ffmpeg/ffprobe argv, without the prlimit wrapper
    stdout: bytes
    stderr_tail: str


@dataclass(frozen=True)
class VideoOutput:
    kind: str
    path: Path
    mime_type: str
    width: int
    height: int
    argv: list[str]


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        # A missing tool is an outage (CF-11): the job waits and retries.
        raise FileNotFoundError(f"{name} is not installed (apt-get install ffmpeg)")
    return found


@cache
def tool_version(name: str = "ffmpeg") -> str:
    out = subprocess.run(  # noqa: S603 - fixed argv
        [_binary(name), "-hide_banner", "-version"], capture_output=True, timeout=10, check=True
    ).stdout.decode("utf-8", "replace")
    return out.splitlines()[0][:200] if out else name


_PR_SET_PDEATHSIG = 1
_libc_prctl: Any = None
try:
    import ctypes

    _libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
    _libc_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    _libc_prctl.restype = ctypes.c_int
except (OSError, AttributeError):  # not Linux: the process group still covers timeouts
    _libc_prctl = None


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """``preexec_fn``: the child gets SIGKILL when the thread that started it dies.
    Threat: an ffmpeg child of a killed worker running on, holding CPU, memory and a
    copy of the evidence in a work directory nobody owns (CF-04)."""
    if _libc_prctl is None:
        return None
    prctl = _libc_prctl
    signum = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal will come.
        if os.getppid() != parent_pid:
            os._exit(137)

    return preexec


def run(
    argv: list[str],
    *,
    cwd: Path,
    timeout_seconds: float,
    cpu_seconds: int,
    memory_bytes: int,
    on_stdout_line: Callable[[str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> RunResult:
    """Run ``argv`` (ffmpeg/ffprobe) in ``cwd`` under resource limits. Raises
    ``ToolTimeout``, ``Cancelled``, or ``ToolFailed`` on a non-zero exit."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise FileNotFoundError("prlimit is not installed (util-linux)")
    wrapped = [prlimit, f"--cpu={cpu_seconds}", f"--as={memory_bytes}", "--core=0", "--", *argv]
    stderr_path = cwd / f".stderr-{os.getpid()}-{threading.get_ident()}"
    stop = threading.Event()
    why: list[str] = []
    with open(stderr_path, "w+b") as stderr_file:
        process = subprocess.Popen(  # noqa: S603 - argv list, no shell; input forced above
            wrapped, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=stderr_file, start_new_session=True, env=_child_env(),
            preexec_fn=_die_with_parent(os.getpid()),  # one libc call: see _die_with_parent
        )

        def watchdog() -> None:
            # Kill the whole process group on timeout or cancellation.
            end = threading.Event()
            waited = 0.0
            while not stop.is_set():
                if cancelled is not None and cancelled():
                    why.append("cancelled")
                    break
                if waited >= timeout_seconds:
                    why.append("timeout")
                    break
                end.wait(0.2)
                waited += 0.2
            else:
                return
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        guard = threading.Thread(target=watchdog, name="ffmpeg-watchdog", daemon=True)
        guard.start()
        chunks: list[bytes] = []
        try:
            assert process.stdout is not None
            if on_stdout_line is not None:
                for raw in process.stdout:
                    on_stdout_line(raw.decode("utf-8", "replace").strip())
            else:
                chunks.append(process.stdout.read())
            returncode = process.wait()
        finally:
            stop.set()
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            guard.join()
            if process.stdout is not None:
                process.stdout.close()
        stderr_file.seek(0, os.SEEK_END)
        size = stderr_file.tell()
        stderr_file.seek(max(0, size - STDERR_TAIL))
        tail = stderr_file.read().decode("utf-8", "replace")
    stderr_path.unlink(missing_ok=True)
    if why and why[0] == "cancelled":
        raise Cancelled(f"{Path(argv[0]).name} cancelled")
    if why and why[0] == "timeout":
        raise ToolTimeout(f"{Path(argv[0]).name} exceeded {timeout_seconds:.0f} s")
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU):
        raise ToolTimeout(f"{Path(argv[0]).name} hit its CPU limit ({cpu_seconds} s)")
    if returncode != 0:
        raise ToolFailed(f"{Path(argv[0]).name} exited {returncode}: {tail.strip()[-500:]}")
    return RunResult(argv=argv, stdout=b"".join(chunks), stderr_tail=tail)


def _child_env() -> dict[str, str]:
    # A minimal environment: no proxies (http_proxy would be an egress path), no
    # FFREPORT or other knobs an operator's shell may carry.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def input_args(mime: str) -> list[str]:
    demuxer = DEMUXER_FOR_MIME.get(mime)
    if demuxer is None:
        raise VideoRejected(f"{mime} is not an allowed video type")
    return ["-protocol_whitelist", PROTOCOLS, "-f", demuxer]


def probe(workdir: Path, mime: str, *, input_name: str = "input") -> tuple[dict[str, Any], list[str]]:
    """ffprobe JSON of ``workdir/input`` read with the demuxer allowed for ``mime``.
    Raises ``VideoRejected`` when it cannot be read as such, or is over the limits."""
    argv = [
        _binary("ffprobe"), "-hide_banner", "-v", "error",  # stdin is /dev/null
        *input_args(mime),
        # -count_packets: the number of packets the file really holds (a full demux, no
        # decode), the measure every later limit is taken from (BF-19).
        "-count_packets", "-print_format", "json", "-show_format", "-show_streams",
        f"file:{input_name}",
    ]
    size_mib = (workdir / input_name).stat().st_size / (1 << 20)
    limit = PROBE_TIMEOUT_SECONDS + size_mib * PROBE_SECONDS_PER_MIB
    try:
        result = run(
            argv, cwd=workdir, timeout_seconds=limit, cpu_seconds=int(limit),
            memory_bytes=PROBE_MEMORY_BYTES,
        )
    except ToolFailed as exc:
        raise VideoRejected(f"not a readable {DEMUXER_FOR_MIME[mime]} file: {str(exc)[-300:]}") from None
    try:
        info = json.loads(result.stdout.decode("utf-8", "replace") or "{}")
    except ValueError:
        raise VideoRejected("ffprobe output unreadable") from None
    if not isinstance(info, dict):
        raise VideoRejected("ffprobe output unreadable")
    check_probe(info)
    return info, argv


def check_probe(info: dict[str, Any]) -> None:
    fmt = info.get("format") or {}
    name = str(fmt.get("format_name", ""))
    if name not in ALLOWED_FORMAT_NAMES:
        # Checked before anything decodes a frame (BF-12).
        raise VideoRejected(f"container {name[:50]!r} is not on the allowlist")
    streams = info.get("streams") or []
    if len(streams) > MAX_STREAMS:
        raise VideoRejected(f"{len(streams)} streams is over the {MAX_STREAMS}-stream limit")
    video = [s for s in streams if s.get("codec_type") == "video" and not _is_attached_pic(s)]
    if not video:
        raise VideoRejected("no video stream")
    for s in video:
        w, h = int(s.get("width") or 0), int(s.get("height") or 0)
        if w <= 0 or h <= 0:
            raise VideoRejected("video stream without dimensions")
        if w > MAX_SIDE_PX or h > MAX_SIDE_PX:
            raise VideoRejected(f"{w}x{h} is over the {MAX_SIDE_PX}px limit")
    duration = _float(fmt.get("duration"))
    if duration is not None and duration > MAX_DURATION_SECONDS:
        raise VideoRejected(f"duration {duration:.0f} s is over the {MAX_DURATION_SECONDS} s limit")
    packets = video_packets(info)
    if packets is not None and packets > MAX_VIDEO_PACKETS:
        raise VideoRejected(f"{packets} video packets is over the {MAX_VIDEO_PACKETS}-packet limit")


def video_packets(info: dict[str, Any]) -> int | None:
    """The packets the main video stream really holds (ffprobe ``-count_packets``), or
    None when the probe did not count them."""
    try:
        s = main_video_stream(info)
    except VideoRejected:
        return None
    value = str(s.get("nb_read_packets", ""))
    return int(value) if value.isdigit() else None


def input_size(info: dict[str, Any]) -> int:
    value = str((info.get("format") or {}).get("size", ""))
    return int(value) if value.isdigit() else 0


def _is_attached_pic(stream: dict[str, Any]) -> bool:
    return bool((stream.get("disposition") or {}).get("attached_pic"))


def _float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result and result >= 0 else None  # not NaN


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).replace("\x00", "").strip()
    return text[:MAX_TEXT] or None


def rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            try:
                return int(float(side["rotation"])) % 360
            except (TypeError, ValueError):
                return 0
    try:
        return int(float((stream.get("tags") or {}).get("rotate", 0))) % 360
    except (TypeError, ValueError):
        return 0


def main_video_stream(info: dict[str, Any]) -> dict[str, Any]:
    for s in info.get("streams") or []:
        if s.get("codec_type") == "video" and not _is_attached_pic(s):
            return dict(s)
    raise VideoRejected("no video stream")


def displayed_size(info: dict[str, Any]) -> tuple[int, int]:
    s = main_video_stream(info)
    w, h = int(s.get("width") or 0), int(s.get("height") or 0)
    return (h, w) if rotation(s) in (90, 270) else (w, h)


def _iso6709(value: str | None) -> dict[str, float] | None:
    """'+51.5007-000.1246+012.000/' -> latitude/longitude (untrusted; validated)."""
    if not value:
        return None
    match = re.match(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)", value)
    if not match:
        return None
    lat, lon = float(match.group(1)), float(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return {"latitude": round(lat, 7), "longitude": round(lon, 7)}


def metadata(info: dict[str, Any]) -> dict[str, Any]:
    """The fields a reviewer needs from ffprobe JSON, capped and typed."""
    fmt = info.get("format") or {}
    tags = {str(k).lower()[:100]: v for k, v in (fmt.get("tags") or {}).items()}
    location = (
        tags.get("com.apple.quicktime.location.iso6709") or tags.get("location") or tags.get("location-eng")
    )
    streams = []
    for s in (info.get("streams") or [])[:MAX_STREAMS]:
        entry: dict[str, Any] = {
            "index": s.get("index"),
            "type": _text(s.get("codec_type")),
            "codec": _text(s.get("codec_name")),
            "profile": _text(s.get("profile")),
        }
        if s.get("codec_type") == "video":
            entry.update(
                width=s.get("width"), height=s.get("height"), rotation=rotation(s),
                frame_rate=_text(s.get("avg_frame_rate")), pix_fmt=_text(s.get("pix_fmt")),
            )
        elif s.get("codec_type") == "audio":
            entry.update(sample_rate=_text(s.get("sample_rate")), channels=s.get("channels"))
        streams.append({k: v for k, v in entry.items() if v is not None})
    video = main_video_stream(info)
    width, height = displayed_size(info)
    result: dict[str, Any] = {
        "kind": "video",
        "container": _text(fmt.get("format_name")),
        "duration_seconds": _float(fmt.get("duration")),
        "size": int(fmt["size"]) if str(fmt.get("size", "")).isdigit() else None,
        "bit_rate": int(fmt["bit_rate"]) if str(fmt.get("bit_rate", "")).isdigit() else None,
        "width": width,
        "height": height,
        "rotation": rotation(video),
        "video_codec": _text(video.get("codec_name")),
        "creation_time": _text(tags.get("creation_time") or tags.get("com.apple.quicktime.creationdate")),
        "camera_make": _text(tags.get("com.apple.quicktime.make") or tags.get("make")),
        "camera_model": _text(tags.get("com.apple.quicktime.model") or tags.get("model")),
        "location_raw": _text(location),
        "gps": _iso6709(_text(location)),
        "streams": streams,
    }
    return {k: v for k, v in result.items() if v is not None}


def proxy_size(width: int, height: int) -> tuple[int, int]:
    """Fit within 1920x1080 (either orientation), never upscale, even dimensions."""
    long_side, short_side = max(width, height), min(width, height)
    scale = min(1.0, PROXY_LONG_SIDE / long_side, PROXY_SHORT_SIDE / short_side)
    w, h = max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
    return w, h


def _maps(info: dict[str, Any], *, audio: bool) -> list[str]:
    """``-map`` by absolute stream index: the main video stream (never a cover picture,
    which ``0:v:0`` can be) and, for the proxy, the first audio stream. Nothing else
    (subtitles, data, attachments, timed metadata) is ever mapped (BF-18)."""
    index = main_video_stream(info).get("index")
    if not isinstance(index, int):
        raise VideoRejected("video stream without an index")
    maps = ["-map", f"0:{index}"]
    if audio:
        for s in info.get("streams") or []:
            if s.get("codec_type") == "audio" and isinstance(s.get("index"), int):
                maps += ["-map", f"0:{s['index']}"]
                break
    return maps


def poster_argv(info: dict[str, Any], mime: str, out_name: str = "poster.jpg") -> list[str]:
    duration = _float((info.get("format") or {}).get("duration")) or 0.0
    at = min(1.0, duration / 2)
    w, h = proxy_size(*displayed_size(info))
    return [
        _binary("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error",
        # Output-side seek: decodes up to the instant, robust on streams (MPEG-TS)
        # whose keyframe index an input-side seek misses.
        *input_args(mime), "-i", "file:input", "-ss", f"{at:.3f}",
        *_maps(info, audio=False), "-frames:v", "1", "-vf", f"scale={w}:{h}",
        # bitexact: no "Lavc" comment segment in the JPEG (BF-18).
        "-map_metadata", "-1", "-map_chapters", "-1", *BITEXACT,
        "-f", "image2", "-update", "1", "-c:v", "mjpeg", "-q:v", "3",
        "-y", f"file:{out_name}",
    ]


def proxy_argv(info: dict[str, Any], mime: str, out_name: str = "proxy.mp4") -> list[str]:
    """H.264/AAC MP4 <= 1080p, faststart; ffmpeg's autorotate bakes the rotation into
    the pixels; the input's own timing (variable frame rate) and at most as many frames
    as it really holds; no metadata copied from the input, no version tags."""
    w, h = proxy_size(*displayed_size(info))
    packets = video_packets(info)
    cap = ["-frames:v", str(max(1, packets))] if packets is not None else []
    return [
        _binary("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error",
        *input_args(mime), "-i", "file:input",
        *_maps(info, audio=True),
        "-vf", f"scale={w}:{h},format=yuv420p",
        # BF-19: never duplicate frames to fill a claimed timestamp gap.
        "-fps_mode", "passthrough", *cap,
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-profile:v", "high",
        # x264 writes its version and every option into an SEI unit: drop SEI (BF-18).
        "-bsf:v", "filter_units=remove_types=6",
        "-c:a", "aac", "-b:a", "128k", "-ac", "2",
        "-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn", *BITEXACT,
        "-movflags", "+faststart",
        "-progress", "pipe:1", "-nostats",
        "-f", "mp4", "-y", f"file:{out_name}",
    ]


def transcode_limits(info: dict[str, Any]) -> float:
    """Wall-clock seconds for the proxy, from what the file really holds (its video
    packets and its size), never from its declared duration (BF-19)."""
    packets = video_packets(info)
    if packets is None:  # not counted: assume the worst the limits allow
        packets = MAX_VIDEO_PACKETS
    return LIMIT_BASE_SECONDS + packets * LIMIT_SECONDS_PER_PACKET + input_size(info) / (1 << 20) * LIMIT_SECONDS_PER_MIB


def within_budget(seconds: float, deadline: float | None) -> float:
    """``seconds``, cut to what is left of the job's budget (``deadline`` on the
    monotonic clock). Raises ``ToolTimeout`` when nothing is left."""
    if deadline is None:
        return seconds
    left = deadline - time.monotonic()
    if left <= 0:
        raise ToolTimeout("the job's time budget is spent")
    return min(seconds, left)


def make_poster(
    workdir: Path, mime: str, info: dict[str, Any], cancelled: Callable[[], bool] | None = None,
    *, deadline: float | None = None,
) -> VideoOutput:
    argv = poster_argv(info, mime)
    limit = within_budget(POSTER_SECONDS, deadline)
    run(argv, cwd=workdir, timeout_seconds=limit, cpu_seconds=max(1, int(limit) * 2),
        memory_bytes=FFMPEG_MEMORY_BYTES, cancelled=cancelled)
    w, h = proxy_size(*displayed_size(info))
    path = workdir / "poster.jpg"
    if not path.is_file() or path.stat().st_size == 0:
        raise ToolFailed("ffmpeg wrote no poster frame")
    return VideoOutput("poster", path, "image/jpeg", w, h, argv)


def make_proxy(
    workdir: Path,
    mime: str,
    info: dict[str, Any],
    *,
    on_progress: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    deadline: float | None = None,
) -> VideoOutput:
    argv = proxy_argv(info, mime)
    packets = video_packets(info) or 0

    def line(text: str) -> None:
        key, _, value = text.partition("=")
        if on_progress is None:
            return
        # Progress in frames written of frames held: a claimed duration cannot skew it.
        if key == "frame" and packets > 0 and value.isdigit():
            on_progress(max(0, min(99, int(value) * 100 // packets)))
        elif key == "progress" and value == "end":
            on_progress(100)

    timeout = within_budget(transcode_limits(info), deadline)
    # CPU time: two cores' worth of the wall-clock limit (x264 runs threads).
    run(argv, cwd=workdir, timeout_seconds=timeout, cpu_seconds=max(1, int(timeout * 2)),
        memory_bytes=FFMPEG_MEMORY_BYTES, on_stdout_line=line, cancelled=cancelled)
    w, h = proxy_size(*displayed_size(info))
    path = workdir / "proxy.mp4"
    if not path.is_file() or path.stat().st_size == 0:
        raise ToolFailed("ffmpeg wrote no proxy")
    return VideoOutput("proxy", path, "video/mp4", w, h, argv)
