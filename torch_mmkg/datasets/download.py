r"""Verified downloads of raw files pinned to a commit and a checksum, with an offline mirror.

Every raw file of :mod:`torch_mmkg.datasets` is a file of a public GitHub repository at a fixed
commit, downloaded from ``https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>``.
Set the environment variable :obj:`TORCH_MMKG_MIRROR` to replace the URL base:

* a local directory (or ``file://`` URL) laid out as ``<owner>/<repo>/<commit>/<path>``: files
  are copied from there and nothing touches the network;
* another base URL (``http://`` or ``https://``), e.g. an institutional mirror.

Every raw file is also pinned to its SHA-256 and size (see
:mod:`torch_mmkg.datasets.checksums`). :func:`fetch` writes to a temporary file next to the
destination, checks it against the pin, and only then moves it into place, so a dropped
connection, a proxy's error page or a damaged mirror never leaves a partial or wrong file
behind. HTTPS certificates are verified against the system's certificate authorities (set
``SSL_CERT_FILE`` for a private one), and transient failures are retried with backoff
(:obj:`RETRIES`, :obj:`BACKOFF`, :obj:`TIMEOUT`).
"""
import hashlib
import http.client
import os
import os.path as osp
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Optional, Tuple

from torch_mmkg.datasets.checksums import PINS

MIRROR_ENV = 'TORCH_MMKG_MIRROR'
DEFAULT_BASE = 'https://raw.githubusercontent.com'

#: How many times a failed transfer (connection error, timeout, truncated body, HTTP 5xx, 408
#: or 429) is retried after the first try.
RETRIES = 3
#: Seconds to wait before the first retry; doubled before each further one.
BACKOFF = 1.0
#: Seconds a connection may wait on the server (to connect, and for each read).
TIMEOUT = 60.0
#: How many times a complete body that does not match its pin is fetched again (within
#: :obj:`RETRIES`) before it is an error.
MISMATCH_RETRIES = 1
#: Bytes read (and hashed) at a time.
CHUNK_SIZE = 1 << 16


class ChecksumError(ValueError):
    r"""The content of a raw file (downloaded, in a mirror, or in a raw folder) does not match
    its pinned SHA-256 and size."""


class UnpinnedFileError(ValueError):
    r"""A raw file declared without a pin was fetched or verified; the message gives the
    SHA-256 and size of the file found, to paste into the declaration."""


class DownloadError(OSError):
    r"""A download failed: a permanent error (HTTP 4xx, an unverifiable certificate), or
    transient errors on every try."""


@dataclass(frozen=True)
class RawFile:
    r"""A raw file of a public repository at a pinned commit, with its pinned content.

    Args:
        owner (str): Repository owner.
        repo (str): Repository name.
        commit (str): Full commit hash.
        path (str): Path of the file inside the repository.
        name (str, optional): File name in the dataset's raw folder (default: the base name of
            :obj:`path`).
        sha256 (str, optional): The SHA-256 of the file's content (hex). Give it together with
            :obj:`size`. (default: the pin of :obj:`rel_path` in
            :obj:`torch_mmkg.datasets.checksums.PINS`, if any)
        size (int, optional): The file's size in bytes. (default: as :obj:`sha256`)

    Raises:
        ValueError: If only one of :obj:`sha256` and :obj:`size` is given, or either is
            malformed.

    A file without a pin cannot be fetched or verified: the error then gives the SHA-256 and
    size of the file found, so that they can be pasted into the declaration.
    """
    owner: str
    repo: str
    commit: str
    path: str
    name: str = ''
    sha256: Optional[str] = None
    size: Optional[int] = None

    def __post_init__(self):
        if self.sha256 is None and self.size is None:
            pin = PINS.get(self.rel_path)
            if pin is not None:
                object.__setattr__(self, 'sha256', pin[0])
                object.__setattr__(self, 'size', pin[1])
            return
        if self.sha256 is None or self.size is None:
            raise ValueError(f"RawFile {self.rel_path}: give both sha256 and size (or neither "
                             f"for a file pinned in torch_mmkg.datasets.checksums)")
        sha = str(self.sha256).lower()
        if len(sha) != 64 or any(c not in '0123456789abcdef' for c in sha):
            raise ValueError(f"RawFile {self.rel_path}: sha256 must be 64 hex digits, got "
                             f"{self.sha256!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"RawFile {self.rel_path}: size must be a number of bytes >= 0, "
                             f"got {self.size!r}")
        object.__setattr__(self, 'sha256', sha)

    @property
    def local_name(self) -> str:
        return self.name or osp.basename(self.path)

    @property
    def rel_path(self) -> str:
        return f'{self.owner}/{self.repo}/{self.commit}/{self.path}'

    @property
    def url(self) -> str:
        return f'{DEFAULT_BASE}/{self.rel_path}'

    @property
    def pinned(self) -> bool:
        r"""Whether the file has a pinned SHA-256 and size."""
        return self.sha256 is not None and self.size is not None


def mirror_base() -> str:
    r"""The URL base or mirror directory in force (:obj:`TORCH_MMKG_MIRROR`, else GitHub)."""
    return os.getenv(MIRROR_ENV, '') or DEFAULT_BASE


def file_digest(path: str) -> Tuple[str, int]:
    r"""The SHA-256 (hex) and size in bytes of the file at :obj:`path`.

    Args:
        path (str): The file.

    Returns:
        (str, int): The digest and the size.
    """
    h, size = hashlib.sha256(), 0
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b''):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _mismatch(what: str, raw: RawFile, sha256: str, size: int, longer: bool = False) -> str:
    found = (f'more than {raw.size} bytes (sha256 {sha256} of the first {size})' if longer
             else f'sha256 {sha256} ({size} bytes)')
    return (f"{what} does not match the pin of {raw.rel_path}: expected sha256 {raw.sha256} "
            f"({raw.size} bytes), found {found}")


def _unpinned(what: str, raw: RawFile, sha256: str, size: int) -> str:
    name = f', name={raw.name!r}' if raw.name else ''
    return (f"{what}: {raw.rel_path} has no pinned checksum, so its content cannot be "
            f"verified. The file found has sha256 {sha256} and {size} bytes; if it is the file "
            f"you mean, declare it as RawFile({raw.owner!r}, {raw.repo!r}, {raw.commit!r}, "
            f"{raw.path!r}{name}, sha256='{sha256}', size={size})")


def verify(raw: RawFile, path: str) -> None:
    r"""Checks the local file :obj:`path` against the pin of :obj:`raw`.

    Args:
        raw (RawFile): The declaration.
        path (str): The local copy.

    Raises:
        ChecksumError: If the file's SHA-256 or size differs from the pin.
        UnpinnedFileError: If :obj:`raw` has no pin (the message gives the file's).
    """
    sha256, size = file_digest(path)
    if not raw.pinned:
        raise UnpinnedFileError(_unpinned(path, raw, sha256, size))
    if (sha256, size) != (raw.sha256, raw.size):
        raise ChecksumError(_mismatch(path, raw, sha256, size))


def ensure(raw: RawFile, folder: str, log: bool = True, **kwargs) -> str:
    r"""Returns the local path of a verified copy of :obj:`raw` in :obj:`folder`: a copy
    already there is verified against its pin; one that does not match is reported with a
    warning, removed and fetched again; a missing one is fetched.

    Args:
        raw (RawFile): The file.
        folder (str): The raw folder.
        log (bool, optional): Print progress. (default: :obj:`True`)
        **kwargs: :obj:`retries`, :obj:`backoff`, :obj:`timeout` of :func:`fetch`.

    Returns:
        str: The local path.

    Raises:
        UnpinnedFileError: If :obj:`raw` has no pin.
        ChecksumError, DownloadError, FileNotFoundError: As :func:`fetch`.
    """
    path = osp.join(folder, raw.local_name)
    if osp.exists(path):
        try:
            verify(raw, path)
            return path
        except ChecksumError as e:
            warnings.warn(f"{e}; removing it and fetching it again", stacklevel=2)
            os.remove(path)
    return fetch(raw, folder, log=log, **kwargs)


def fetch(raw: RawFile, folder: str, log: bool = True, *, retries: Optional[int] = None,
          backoff: Optional[float] = None, timeout: Optional[float] = None) -> str:
    r"""Puts a verified copy of :obj:`raw` into :obj:`folder`, downloaded from the URL base in
    force (:func:`mirror_base`) or copied from a local mirror.

    The content goes to a temporary file in :obj:`folder`, is checked against the pinned
    SHA-256 and size, and only then replaces ``folder/<raw.local_name>``; on any failure the
    temporary file is removed and the destination is left as it was.

    Args:
        raw (RawFile): The file.
        folder (str): Destination folder (created if needed).
        log (bool, optional): Print progress. (default: :obj:`True`)
        retries (int, optional): Retries of a failed transfer. (default: :obj:`RETRIES`)
        backoff (float, optional): Seconds before the first retry, doubled before each further
            one. (default: :obj:`BACKOFF`)
        timeout (float, optional): Seconds a connection may wait on the server.
            (default: :obj:`TIMEOUT`)

    Returns:
        str: The local path.

    Raises:
        ChecksumError: If the content does not match the pin (a mirror file at once, a
            download after :obj:`MISMATCH_RETRIES` more tries).
        UnpinnedFileError: If :obj:`raw` has no pin (the message gives the SHA-256 and size of
            what was fetched).
        DownloadError: If the download failed (HTTP 4xx, certificate, or every try failed).
        FileNotFoundError: If a local mirror lacks the file.
    """
    retries = RETRIES if retries is None else retries
    backoff = BACKOFF if backoff is None else backoff
    timeout = TIMEOUT if timeout is None else timeout
    os.makedirs(folder, exist_ok=True)
    dst = osp.join(folder, raw.local_name)
    base = mirror_base().rstrip('/')
    if base.startswith('file://'):
        base = base[len('file://'):]
    remote = base.startswith(('http://', 'https://'))
    if remote:
        src = f'{base}/{raw.rel_path}'
    else:
        src = osp.join(base, *raw.rel_path.split('/'))
        if not osp.isfile(src):
            raise FileNotFoundError(f"{MIRROR_ENV}={mirror_base()!r} is a local mirror, but it "
                                    f"has no file {src} (expected layout "
                                    f"<owner>/<repo>/<commit>/<path>)")
    # A name of our own in the destination folder (so that os.replace is atomic), created
    # with the usual permissions.
    tmp = osp.join(folder, f'.{raw.local_name}.{uuid.uuid4().hex[:12]}.part')
    try:
        with open(tmp, 'xb') as f:
            if remote:
                sha256, size = _download(raw, src, f, log, retries, backoff, timeout)
            else:
                if log:
                    print(f'Copying {src}', flush=True)
                sha256, size = _copy(src, f)
                if raw.pinned and (sha256, size) != (raw.sha256, raw.size):
                    raise ChecksumError(_mismatch(f'Mirror file {src}', raw, sha256, size) +
                                        ' (a truncated or modified copy)')
            f.flush()
            os.fsync(f.fileno())
        if not raw.pinned:
            raise UnpinnedFileError(_unpinned(src, raw, sha256, size))
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    return dst


def _copy(src: str, f: BinaryIO) -> Tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(src, 'rb') as s:
        for chunk in iter(lambda: s.read(CHUNK_SIZE), b''):
            h.update(chunk)
            f.write(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class _Transient(Exception):
    r"""A failure that another try may not have."""


class _Permanent(Exception):
    r"""A failure that another try would repeat."""


def _user_agent() -> str:
    import torch_mmkg
    version = getattr(torch_mmkg, '__version__', 'unknown')
    py = '.'.join(map(str, sys.version_info[:3]))
    return f'torch_mmkg/{version} (Python-urllib/{py})'


def _open(url: str, timeout: float):
    request = urllib.request.Request(url, headers={'User-Agent': _user_agent(),
                                                   'Accept-Encoding': 'identity'})
    try:
        return urllib.request.urlopen(request, timeout=timeout,
                                      context=ssl.create_default_context())
    except urllib.error.HTTPError as e:
        e.close()
        if e.code >= 500 or e.code in (408, 429):
            raise _Transient(f'HTTP {e.code} {e.reason}') from e
        raise _Permanent(f'HTTP {e.code} {e.reason}') from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            raise _Permanent(f"{e.reason} (the server's TLS certificate cannot be verified; "
                             f"for a mirror with a private certificate authority, set "
                             f"SSL_CERT_FILE to its certificate)") from e
        raise _Transient(str(e.reason)) from e
    except (http.client.HTTPException, OSError) as e:
        raise _Transient(f'{type(e).__name__}: {e}') from e


def _transfer(raw: RawFile, url: str, f: BinaryIO, timeout: float) -> Tuple[str, int, bool]:
    r"""One try: streams the body of :obj:`url` into :obj:`f` while hashing it. Returns the
    digest, the bytes received and whether the body is longer than the pinned size (then only
    its start was read)."""
    f.seek(0)
    f.truncate()
    with _open(url, timeout) as response:
        header = response.headers.get('Content-Length', '')
        length = int(header) if header.strip().isdigit() else None
        # Read a body longer than the pin (without a length to bound it) only up to the point
        # where it is known to be wrong.
        limit = raw.size if raw.pinned and length is None else None
        h, size = hashlib.sha256(), 0
        while True:
            try:
                chunk = response.read(CHUNK_SIZE)
            except (http.client.HTTPException, OSError) as e:
                raise _Transient(f'the transfer broke off after {size} bytes '
                                 f'({type(e).__name__}: {e})') from e
            if not chunk:
                break
            h.update(chunk)
            f.write(chunk)
            size += len(chunk)
            if limit is not None and size > limit:
                return h.hexdigest(), size, True
    # http.client ends the body silently when the connection closes early.
    if length is not None and size < length:
        raise _Transient(f'the connection closed after {size} of {length} bytes '
                         f'(Content-Length)')
    if length is None and raw.pinned and size < raw.size:
        raise _Transient(f'the body ended after {size} of the pinned {raw.size} bytes')
    return h.hexdigest(), size, False


def _download(raw: RawFile, url: str, f: BinaryIO, log: bool, retries: int, backoff: float,
              timeout: float) -> Tuple[str, int]:
    if log:
        print(f'Downloading {url}', file=sys.stderr, flush=True)
    tries, mismatches = 0, 0
    while True:
        tries += 1
        try:
            sha256, size, longer = _transfer(raw, url, f, timeout)
        except _Permanent as e:
            raise DownloadError(f'{url}: {e}') from e.__cause__
        except _Transient as e:
            if tries > retries:
                raise DownloadError(f'{url}: download failed after {tries} tries; last error: '
                                    f'{e}') from e.__cause__
            reason = str(e)
        else:
            if not raw.pinned or (sha256, size, longer) == (raw.sha256, raw.size, False):
                return sha256, size
            message = _mismatch(f'Download {url}', raw, sha256, size, longer)
            if mismatches >= MISMATCH_RETRIES or tries > retries:
                raise ChecksumError(f'{message} (after {tries} tries)')
            mismatches += 1
            reason = message
        delay = backoff * 2**(tries - 1)
        if log:
            print(f'{reason}; retrying in {delay:.1f} s (retry {tries} of {retries})',
                  file=sys.stderr, flush=True)
        time.sleep(delay)
