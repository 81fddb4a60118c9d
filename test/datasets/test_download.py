r"""Downloads cannot corrupt a dataset: pinned checksums, atomic verified fetches, TLS checks,
retries, and raw folders that heal."""
import contextlib
import dataclasses
import hashlib
import http.server
import os
import os.path as osp
import shutil
import ssl
import subprocess
import threading

import pytest

from torch_mmkg.datasets import (DATASETS, MIRROR_ENV, TIVA, ChecksumError, DownloadError,
                                 RawFile, UnpinnedFileError, fetch)
from torch_mmkg.datasets.checksums import PINS, library_rel_paths
from torch_mmkg.datasets.download import ensure, file_digest
from torch_mmkg.testing import mirror_dir, withMirror

PAYLOAD = bytes(range(256)) * 1024           # 256 KiB: several chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()
RAW = RawFile('owner', 'repo', 'abc123', 'dir/data.bin', sha256=SHA, size=len(PAYLOAD))


# -- a loopback server whose every answer the test decides -----------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with self.server.lock:
            self.server.hits += 1
            hit = self.server.hits
        self.server.respond(self, hit)

    def log_message(self, *args):
        return None


def send(handler, body: bytes, length: int = None, status: int = 200):
    r"""Sends :obj:`body` under a Content-Length of :obj:`length`; with fewer bytes than
    announced, the connection is then closed (HTTP/1.0): a transfer cut short."""
    handler.send_response(status)
    handler.send_header('Content-Length', str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def full(handler):
    send(handler, PAYLOAD)


def drop(handler):
    send(handler, PAYLOAD[:len(PAYLOAD) // 2], length=len(PAYLOAD))


@contextlib.contextmanager
def serve(respond, monkeypatch, server_cls=http.server.ThreadingHTTPServer, scheme='http'):
    server = server_cls(('127.0.0.1', 0), _Handler)
    server.hits, server.lock, server.respond = 0, threading.Lock(), respond
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.02},
                              daemon=True)
    thread.start()
    base = f'{scheme}://127.0.0.1:{server.server_port}'
    monkeypatch.setenv(MIRROR_ENV, base)
    try:
        yield server, f'{base}/{RAW.rel_path}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def leftovers(folder) -> list:
    return sorted(os.listdir(folder)) if osp.isdir(folder) else []


# -- HTTP ------------------------------------------------------------------------------------
def test_fetch_retries_dropped_connection(tmp_path, monkeypatch):
    with serve(lambda h, hit: drop(h) if hit == 1 else full(h), monkeypatch) as (server, _):
        path = fetch(RAW, str(tmp_path), log=False, retries=2, backoff=0)
    assert server.hits == 2
    with open(path, 'rb') as f:
        assert f.read() == PAYLOAD
    assert leftovers(tmp_path) == ['data.bin']


def test_fetch_gives_up_on_dropped_connection(tmp_path, monkeypatch):
    with serve(lambda h, hit: drop(h), monkeypatch) as (server, url):
        with pytest.raises(DownloadError) as info:
            fetch(RAW, str(tmp_path), log=False, retries=2, backoff=0)
    assert server.hits == 3
    message = str(info.value)
    assert url in message and 'after 3 tries' in message
    assert isinstance(info.value, OSError)
    assert leftovers(tmp_path) == []


def test_fetch_rejects_wrong_bytes(tmp_path, monkeypatch):
    wrong = PAYLOAD[:-1] + b'!'
    with serve(lambda h, hit: send(h, wrong), monkeypatch) as (server, url):
        with pytest.raises(ChecksumError) as info:
            fetch(RAW, str(tmp_path), log=False, retries=3, backoff=0)
    assert server.hits == 2                      # a complete wrong body is fetched once more
    message = str(info.value)
    assert url in message and SHA in message
    assert hashlib.sha256(wrong).hexdigest() in message
    assert isinstance(info.value, ValueError)
    assert leftovers(tmp_path) == []


def test_fetch_http_status_policy(tmp_path, monkeypatch):
    # HTTP 5xx is transient: retried.
    def busy_once(h, hit):
        send(h, b'busy', status=503) if hit == 1 else full(h)

    with serve(busy_once, monkeypatch) as (server, _):
        fetch(RAW, str(tmp_path / 'a'), log=False, retries=1, backoff=0)
    assert server.hits == 2 and leftovers(tmp_path / 'a') == ['data.bin']
    # HTTP 4xx is permanent: not retried.
    with serve(lambda h, hit: send(h, b'no', status=404), monkeypatch) as (server, url):
        with pytest.raises(DownloadError, match='404') as info:
            fetch(RAW, str(tmp_path / 'b'), log=False, retries=5, backoff=0)
    assert server.hits == 1 and url in str(info.value)
    assert leftovers(tmp_path / 'b') == []


def test_https_certificate_is_verified(tmp_path, monkeypatch):
    if shutil.which('openssl') is None:
        pytest.skip('no openssl command line')
    cert, key = str(tmp_path / 'cert.pem'), str(tmp_path / 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
                    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext',
                    'subjectAltName=IP:127.0.0.1'], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    class TLSServer(http.server.ThreadingHTTPServer):
        accepted = 0

        def get_request(self):
            sock, addr = super().get_request()
            self.accepted += 1
            sock.settimeout(5)
            return context.wrap_socket(sock, server_side=True), addr

    dest = str(tmp_path / 'raw')
    with serve(lambda h, hit: full(h), monkeypatch, TLSServer, 'https') as (server, url):
        monkeypatch.delenv('SSL_CERT_FILE', raising=False)
        with pytest.raises(DownloadError, match='CERTIFICATE_VERIFY_FAILED') as info:
            fetch(RAW, dest, log=False, retries=3, backoff=0)
        assert url in str(info.value)
        assert server.accepted == 1 and server.hits == 0     # refused once, not retried
        assert leftovers(dest) == []
        # The same server passes once its certificate is trusted: the refusal was the check.
        monkeypatch.setenv('SSL_CERT_FILE', cert)
        path = fetch(RAW, dest, log=False, retries=0)
    with open(path, 'rb') as f:
        assert f.read() == PAYLOAD


# -- local mirrors ---------------------------------------------------------------------------
@pytest.mark.parametrize('damage', ['truncated', 'modified'])
def test_fetch_rejects_bad_mirror_copy(damage, tmp_path, monkeypatch):
    bad = PAYLOAD[:1000] if damage == 'truncated' else b'x' + PAYLOAD[1:]
    src = tmp_path / 'mirror' / 'owner' / 'repo' / 'abc123' / 'dir' / 'data.bin'
    src.parent.mkdir(parents=True)
    src.write_bytes(bad)
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / 'mirror'))
    with pytest.raises(ValueError) as info:
        fetch(RAW, str(tmp_path / 'raw'), log=False)
    message = str(info.value)
    assert str(src) in message
    assert SHA in message and hashlib.sha256(bad).hexdigest() in message
    assert f'({len(PAYLOAD)} bytes)' in message and f'({len(bad)} bytes)' in message
    assert leftovers(tmp_path / 'raw') == []


# -- pins ------------------------------------------------------------------------------------
def registered_raw_files():
    for name, cls in DATASETS.items():
        for numeric_freebase in (False, True):
            ds = cls.__new__(cls)
            ds.numeric_freebase = numeric_freebase          # DB15K adds FB15K's numeric file
            for f in ds.raw_files():
                yield name, f


def test_every_registered_raw_file_is_pinned():
    files = list(registered_raw_files())
    assert any(f.path == 'FB15K/FB15K_NumericalTriples.txt' for _, f in files)
    for name, f in files:
        assert f.pinned, f'{name}: {f.rel_path} has no pin'
    assert sorted(PINS) == library_rel_paths() == sorted({f.rel_path for _, f in files})
    mirror = mirror_dir()
    if not mirror or not osp.isdir(mirror):
        pytest.skip('no local mirror of the raw files (set TORCH_MMKG_MIRROR)')
    for name, f in files:
        assert file_digest(osp.join(mirror, *f.rel_path.split('/'))) == (f.sha256, f.size), \
            f'{name}: {f.rel_path}'


def test_unpinned_raw_file_is_refused(tmp_path, monkeypatch):
    raw = RawFile('owner', 'repo', 'abc123', 'dir/data.bin')
    assert not raw.pinned
    src = tmp_path / 'mirror' / 'owner' / 'repo' / 'abc123' / 'dir' / 'data.bin'
    src.parent.mkdir(parents=True)
    src.write_bytes(PAYLOAD)
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / 'mirror'))
    with pytest.raises(UnpinnedFileError) as info:
        fetch(raw, str(tmp_path / 'raw'), log=False)
    assert f"sha256='{SHA}', size={len(PAYLOAD)}" in str(info.value)     # ready to paste
    assert isinstance(info.value, ValueError)
    assert leftovers(tmp_path / 'raw') == []
    # A copy already in a raw folder is not trusted either.
    (tmp_path / 'raw' / 'data.bin').write_bytes(PAYLOAD)
    with pytest.raises(UnpinnedFileError, match=SHA):
        ensure(raw, str(tmp_path / 'raw'), log=False)
    # The pasted pin is accepted.
    pinned = RawFile('owner', 'repo', 'abc123', 'dir/data.bin', sha256=SHA, size=len(PAYLOAD))
    assert ensure(pinned, str(tmp_path / 'raw'), log=False) == str(tmp_path / 'raw' / 'data.bin')
    with pytest.raises(ValueError, match='both sha256 and size'):
        RawFile('owner', 'repo', 'abc123', 'dir/data.bin', sha256=SHA)


# -- datasets --------------------------------------------------------------------------------
def test_cache_name_depends_on_pins(tmp_path, monkeypatch):
    ds = TIVA.__new__(TIVA)
    ds.feature_source, ds._encoder, ds._root = 'built', None, str(tmp_path)
    before = ds.processed_file_names
    files = ds.raw_files()
    files[2] = dataclasses.replace(files[2], sha256='0' * 64, size=1)
    monkeypatch.setattr(ds, 'raw_files', lambda: files)
    assert ds.processed_file_names != before


@withMirror
@pytest.mark.filterwarnings('ignore:TIVA. the published split is not clean')
def test_corrupted_raw_file_is_healed(tmp_path):
    mirror = mirror_dir()
    root = tmp_path / 'TIVA'
    raw_dir = root / 'raw'
    raw_dir.mkdir(parents=True)
    files = {f.local_name: f for f in TIVA.__new__(TIVA).raw_files()}
    originals = {}
    for name, f in files.items():
        with open(osp.join(mirror, *f.rel_path.split('/')), 'rb') as src:
            originals[name] = src.read()
        (raw_dir / name).write_bytes(originals[name])

    def truncate(name):
        # What a connection dropped halfway left behind in older versions: whole lines, half
        # of them, under the full header count.
        data = originals[name]
        cut = data[:data.index(b'\n', len(data) // 2) + 1]
        (raw_dir / name).write_bytes(cut)
        return hashlib.sha256(cut).hexdigest()

    # All raw files present (PyG skips download()), one truncated: processing verifies.
    bad = truncate('train2id.txt')
    with pytest.warns(UserWarning, match='train2id.txt does not match') as record:
        ds = TIVA(str(root), text_encoder=None, log=False)
    message = next(str(w.message) for w in record if 'train2id.txt' in str(w.message))
    assert bad in message and files['train2id.txt'].sha256 in message
    rows = ds.split_report['rows']
    assert (ds[0]['entity'].num_nodes, rows['train'], rows['val'], rows['test']) == \
        (11858, 20071, 2000, 2000)
    assert (raw_dir / 'train2id.txt').read_bytes() == originals['train2id.txt']

    # One file missing (PyG runs download()), another truncated: download() verifies.
    os.remove(raw_dir / 'valid2id.txt')
    bad = truncate('test2id.txt')
    with pytest.warns(UserWarning, match='test2id.txt does not match') as record:
        TIVA(str(root), text_encoder=None, log=False)
    assert any(bad in str(w.message) for w in record)
    for name in files:
        assert (raw_dir / name).read_bytes() == originals[name]
    assert sorted(os.listdir(raw_dir)) == sorted(files)             # no temporary files
