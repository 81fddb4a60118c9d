import pytest
import torch

from torch_mmkg.data import build_mmkg
from torch_mmkg.nn import CrossModalAlignment
from torch_mmkg.nn.loss import symmetric_contrastive_loss

pytestmark = pytest.mark.usefixtures('single_thread')


def naive_clip(a, b, tau):
    n = a.size(0)
    S = [[float(a[i] @ b[j] / (a[i].norm() * b[j].norm())) / tau for j in range(n)]
         for i in range(n)]
    S = torch.tensor(S, dtype=torch.float64)
    i2t = sum(S[i, i] - torch.logsumexp(S[i], 0) for i in range(n)) / n
    t2i = sum(S[i, i] - torch.logsumexp(S[:, i], 0) for i in range(n)) / n
    return -0.5 * (i2t + t2i)


def test_symmetric_contrastive_loss_equals_naive_form():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 5, generator=g).double(), torch.randn(7, 5, generator=g).double()
    for tau in (0.07, 0.5, 1.0):
        assert torch.allclose(symmetric_contrastive_loss(a, b, tau), naive_clip(a, b, tau),
                              atol=1e-10)
    # asymmetric in rows and columns: swapping one direction's role changes nothing
    assert torch.allclose(symmetric_contrastive_loss(a, b, 0.3),
                          symmetric_contrastive_loss(b, a, 0.3), atol=1e-12)
    # perfectly aligned, well separated pairs cost almost nothing at a low temperature
    e = torch.eye(6).double()
    assert symmetric_contrastive_loss(e, 3 * e, 0.01) < 1e-6
    # a learnable temperature gets a gradient
    tau = torch.tensor(0.2, requires_grad=True)
    symmetric_contrastive_loss(a.float(), b.float(), tau).backward()
    assert tau.grad is not None and tau.grad != 0
    with pytest.raises(ValueError, match='equal shape'):
        symmetric_contrastive_loss(a, b[:3], 1.0)


def planted_graph(n=300, seed=0):
    # two modalities that are different noisy linear views of one latent per entity
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, generator=g)
    image = z @ torch.randn(8, 20, generator=g) + 0.05 * torch.randn(n, 20, generator=g)
    text = torch.tanh(z @ torch.randn(8, 12, generator=g))
    masks = {'image': torch.rand(n, generator=g) > 0.2, 'text': torch.rand(n, generator=g) > 0.1}
    image[~masks['image']] = 0
    text[~masks['text']] = 0
    edges = torch.randint(0, n, (3, 50), generator=g)
    return build_mmkg(n, 2, {'train': torch.stack([edges[0], edges[1] % 2, edges[2]], 1)},
                      features={'image': image, 'text': text}, masks=masks)


def retrieval_top1(align, data):
    out = align.transform(data)
    both = data['entity'].mask_image & data['entity'].mask_text
    a, b = out['entity'].x_image[both], out['entity'].x_text[both]
    return float(((a @ b.t()).argmax(1) == torch.arange(a.size(0))).float().mean())


def test_alignment_stage_learns_to_align():
    data = planted_graph()
    torch.manual_seed(0)
    align = CrossModalAlignment.from_data(data, out_channels=16, hidden_channels=32)
    before = retrieval_top1(align, data)
    hist = align.fit(data, epochs=60, batch_size=64, lr=3e-3, progress=False)
    after = retrieval_top1(align, data)
    assert hist['val'][-1] < hist['val'][0]
    assert before < 0.2 and after > 0.6, (before, after)
    # the temperature is learnt (and stays within CLIP's clamp)
    assert float(align.temperature) != pytest.approx(0.07) and float(align.temperature) >= 0.01
    out = align.transform(data)
    for m in ('image', 'text'):
        x, k = out['entity'][f'x_{m}'], out['entity'][f'mask_{m}']
        assert x.shape == (300, 16)
        assert torch.equal(k, data['entity'][f'mask_{m}'])
        assert torch.all(x[~k] == 0)
        assert torch.allclose(x[k].norm(dim=1), torch.ones(int(k.sum())), atol=1e-5)
    # the original graph is untouched
    assert data['entity'].x_image.shape == (300, 20)


def test_alignment_loss_uses_rows_with_both():
    torch.manual_seed(0)
    align = CrossModalAlignment({'a': 4, 'b': 3, 'c': 2}, out_channels=5)
    assert align.pairs == [('a', 'b'), ('a', 'c'), ('b', 'c')]
    g = torch.Generator().manual_seed(1)
    x = {'a': torch.randn(6, 4, generator=g), 'b': torch.randn(6, 3, generator=g),
         'c': torch.randn(6, 2, generator=g)}
    k = {'a': torch.tensor([1, 1, 1, 1, 0, 1]).bool(), 'b': torch.tensor([1, 1, 0, 1, 1, 1]).bool(),
         'c': torch.tensor([0, 0, 0, 0, 1, 1]).bool()}
    z = align(x)
    tau = align.temperature
    ab = k['a'] & k['b']
    expected = symmetric_contrastive_loss(z['a'][ab], z['b'][ab], tau)  # a-c has 1 row: skipped
    expected = (expected + symmetric_contrastive_loss(z['b'][k['b'] & k['c']],
                                                      z['c'][k['b'] & k['c']], tau)) / 2
    assert torch.allclose(align.loss(x, k), expected)


def test_errors():
    with pytest.raises(ValueError, match='at least two'):
        CrossModalAlignment({'a': 3})
    with pytest.raises(ValueError, match='temperature'):
        CrossModalAlignment({'a': 3, 'b': 2}, temperature=0)
    data = planted_graph(40)
    with pytest.raises(ValueError, match='not in the graph'):
        CrossModalAlignment({'image': 20, 'audio': 3}).fit(data, epochs=1, progress=False)
    with pytest.raises(ValueError, match='columns'):
        CrossModalAlignment({'image': 19, 'text': 12}).fit(data, epochs=1, progress=False)
