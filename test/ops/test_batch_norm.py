r"""global_batch_norm: one process's BatchNorm1d of the concatenated batch, over gloo ranks."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from torch_mmkg.ops import global_batch_norm


def _bn(seed=0, channels=3, momentum=0.1):
    torch.manual_seed(seed)
    bn = torch.nn.BatchNorm1d(channels, momentum=momentum)
    with torch.no_grad():  # not the identity initialisation, so affine mistakes show
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


def _data(n=7, channels=3):
    g = torch.Generator().manual_seed(1)
    # an offset far from zero: a one-pass E[x^2] - E[x]^2 variance would lose digits
    return torch.randn(n, channels, generator=g, dtype=torch.float64) * 2 + 30, \
        torch.randn(n, channels, generator=g, dtype=torch.float64)


def _reference(x, w, momentum, steps=2):
    bn = _bn(momentum=momentum).double()
    xs = x.clone().requires_grad_()
    for _ in range(steps):
        y = bn(xs)
    (y * w).sum().backward()
    return y.detach(), xs.grad, bn


def test_single_process_is_batch_norm_and_a_single_row_uses_running_stats():
    x, w = _data()
    bn, ref = _bn().double(), _bn().double()
    assert torch.equal(global_batch_norm(x, bn), ref(x))
    assert torch.equal(bn.running_var, ref.running_var)
    row = global_batch_norm(x[:1], bn)  # BatchNorm1d itself raises on one training row
    expected = (x[:1] - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight \
        + bn.bias
    torch.testing.assert_close(row, expected)
    assert int(bn.num_batches_tracked) == 1  # the single row left the statistics alone
    bn.eval()
    assert torch.equal(global_batch_norm(x, bn), ref.eval()(x))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank, world, port, bounds, momentum, queue):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        x, w = _data()
        start, end = bounds[rank]
        bn = _bn(momentum=momentum).double()
        xs = x[start:end].clone().requires_grad_()
        for _ in range(2):
            y = global_batch_norm(xs, bn)
        (y * w[start:end]).sum().backward()
        queue.put((rank, y.detach(), xs.grad, bn.weight.grad, bn.bias.grad,
                   bn.running_mean.clone(), bn.running_var.clone(),
                   int(bn.num_batches_tracked)))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('bounds,momentum', [
    ([(0, 4), (4, 7)], 0.1),  # unequal shards
    ([(0, 7), (7, 7)], None),  # one rank holds no row; cumulative running average
])
def test_two_ranks_equal_one_process_on_the_concatenated_batch(bounds, momentum):
    x, w = _data()
    y_ref, gx_ref, bn_ref = _reference(x, w, momentum)
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, bounds, momentum, queue))
             for r in range(2)]
    for p in procs:
        p.start()
    out = sorted([queue.get(timeout=120) for _ in procs], key=lambda o: o[0])
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    y = torch.cat([o[1] for o in out])
    gx = torch.cat([o[2] for o in out])
    # float64 throughout: only the order of the sums differs (a few ulps)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-12)
    # the affine parameters' gradients: each rank holds its shard's part, their sum is one
    # process's (the trainer averages gradients weighted by the shard's share)
    torch.testing.assert_close(out[0][3] + out[1][3], bn_ref.weight.grad, rtol=1e-10,
                               atol=1e-12)
    torch.testing.assert_close(out[0][4] + out[1][4], bn_ref.bias.grad, rtol=1e-10,
                               atol=1e-12)
    for o in out:  # every rank keeps one process's running statistics
        torch.testing.assert_close(o[5], bn_ref.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(o[6], bn_ref.running_var, rtol=1e-12, atol=1e-12)
        assert o[7] == int(bn_ref.num_batches_tracked) == 2
