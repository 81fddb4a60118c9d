import json

import pytest
import torch

pytest.importorskip('diffusers')
pytest.importorskip('transformers')

import torch_mmkg.completion.generative as generative  # noqa: E402
from torch_mmkg.completion.generative import DiffusionImageCompleter  # noqa: E402
from torch_mmkg.data import build_mmkg, validate_mmkg  # noqa: E402

DIM = 16  # projection size of the tiny CLIP image encoder = width of the 'image' modality
SIZE = 32  # image height and width
TEXTS = ['paris', 'a black cat', 'london', 'a red dog, 2 years old', None, '   ']
FAST = dict(num_inference_steps=2, height=SIZE, width=SIZE, progress=False)


def _bytes_to_unicode():
    # GPT-2/CLIP byte-level alphabet: one printable character per byte.
    bs = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) +
          list(range(ord('®'), ord('ÿ') + 1)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _tokenizer(root):
    from transformers import CLIPTokenizer

    # A character-level BPE vocabulary (no merges) that covers every byte.
    vocab = {'<|startoftext|>': 0, '<|endoftext|>': 1}
    for suffix in ('', '</w>'):
        for c in _bytes_to_unicode():
            vocab[c + suffix] = len(vocab)
    root.mkdir()
    (root / 'vocab.json').write_text(json.dumps(vocab))
    (root / 'merges.txt').write_text('#version: 0.2\n')
    return CLIPTokenizer.from_pretrained(str(root), model_max_length=77), len(vocab)


def _build_models(root):
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel,
                              CLIPTextModelWithProjection, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    tokenizer, vocab_size = _tokenizer(root / 'tokenizer')

    def text_config():
        return CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32,
                              intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                              vocab_size=vocab_size, hidden_act='gelu', projection_dim=32,
                              max_position_embeddings=77)

    def unet(time_ids, cross_attention_dim):
        # SDXL's 'text_time' conditioning: the pooled text embedding (32) and the micro-conditions
        # (6 time ids for the base, 5 with the aesthetic score for the refiner), 8-d each.
        return UNet2DConditionModel(
            block_out_channels=(4, 8), layers_per_block=1, sample_size=SIZE // 2,
            in_channels=4, out_channels=4, down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D'),
            up_block_types=('CrossAttnUpBlock2D', 'UpBlock2D'), attention_head_dim=(2, 4),
            use_linear_projection=True, addition_embed_type='text_time', addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=time_ids * 8 + 32,
            cross_attention_dim=cross_attention_dim, norm_num_groups=1)

    def scheduler():
        return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                      beta_schedule='scaled_linear', timestep_spacing='leading')

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3,
                        down_block_types=['DownEncoderBlock2D'] * 2,
                        up_block_types=['UpDecoderBlock2D'] * 2, latent_channels=4,
                        sample_size=SIZE, norm_num_groups=2)
    text_encoder_2 = CLIPTextModelWithProjection(text_config())
    base = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(text_config()), text_encoder_2=text_encoder_2,
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet(6, 64), scheduler=scheduler(),
        add_watermarker=False)
    base.save_pretrained(str(root / 'sdxl'))
    # Like the real SDXL refiner: text_encoder_2 only (and the base's VAE).
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=vae, text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None,
        tokenizer_2=tokenizer, unet=unet(5, 32), scheduler=scheduler(),
        requires_aesthetics_score=True, add_watermarker=False)
    refiner.save_pretrained(str(root / 'refiner'))
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        image_size=SIZE, patch_size=8, projection_dim=DIM))
    encoder.save_pretrained(str(root / 'clip'))
    CLIPImageProcessor(size={'shortest_edge': SIZE},
                       crop_size={'height': SIZE, 'width': SIZE}).save_pretrained(
                           str(root / 'clip'))
    return {k: str(root / k) for k in ('sdxl', 'refiner', 'clip')}


@pytest.fixture(scope='module')
def paths(tmp_path_factory):
    return _build_models(tmp_path_factory.mktemp('generative'))


@pytest.fixture(scope='module')
def completer(paths):
    return DiffusionImageCompleter.from_pretrained(paths['sdxl'], paths['clip'], texts=TEXTS,
                                                   **FAST)


@pytest.fixture(scope='module')
def refined(paths):
    return DiffusionImageCompleter.from_pretrained(paths['sdxl'], paths['clip'],
                                                   refiner_path=paths['refiner'], texts=TEXTS,
                                                   refiner_strength=0.5, **FAST)


def _graph(with_image=True):
    N = len(TEXTS)
    mask = torch.tensor([True, False, True, False, False, False])
    x = torch.randn(N, DIM)
    x[~mask] = 0
    features, masks = ({'image': x}, {'image': mask}) if with_image else ({}, {})
    return build_mmkg(N, 2, {'train': torch.tensor([[0, 0, 1], [2, 1, 3]]),
                             'test': torch.tensor([[4, 0, 5]])}, features=features, masks=masks)


def _like(c, **kwargs):
    r"""A completer sharing the (loaded) models of :obj:`c`, with other settings."""
    args = dict(image_encoder=c.image_encoder, image_processor=c.image_processor,
                refiner=c.refiner, texts=c.texts, refiner_strength=c.refiner_strength, **FAST)
    args.update(kwargs)
    return DiffusionImageCompleter(c.pipeline, **args)


def test_from_pretrained_and_complete(completer):
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPVisionModelWithProjection

    assert isinstance(completer.pipeline, StableDiffusionXLPipeline)
    assert isinstance(completer.image_encoder, CLIPVisionModelWithProjection)
    assert not completer.image_encoder.training and not completer.pipeline.unet.training
    assert completer.pipeline.device == torch.device('cpu')
    assert 'StableDiffusionXLPipeline' in repr(completer)

    data = _graph()
    assert completer.completable(data, 'image').tolist() == [False, True, False, True, False,
                                                             False]
    index = completer.completable(data, 'image').nonzero().view(-1)
    x = completer.complete(data, 'image', index)
    assert x.shape == (2, DIM) and x.dtype == torch.float32 and x.device.type == 'cpu'
    assert torch.isfinite(x).all() and (x != 0).any(dim=1).all()
    assert not torch.allclose(x[0], x[1])
    assert completer.prompts(data, index) == ['a photo of a black cat',
                                              'a photo of a red dog, 2 years old']

    # The completed rows make a valid graph.
    data['entity'].x_image[index] = x
    data['entity'].mask_image[index] = True
    validate_mmkg(data)
    assert not completer.completable(data, 'image').any()
    assert completer.complete(data, 'image', torch.tensor([], dtype=torch.long)).shape == (0, DIM)


def _pixels(images):
    import numpy as np
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


def _assert_batch_independent(completer, data, index, rows):
    r"""Each entity has its own generator, so batching changes nothing but the order of
    floating-point reductions inside the UNet, VAE and CLIP kernels (which BLAS and the CPU
    decide). Those differences are far below one grey level of the 8-bit image, so a batched
    image and the image generated alone differ by at most one grey level in any pixel
    (measured: identical on AMD EPYC, a few pixels off by one on Intel Xeon). One grey level in
    a few pixels moves the CLIP embedding by ~1e-4 (one level in every pixel of a channel by
    ~2e-2), another seed by ~0.5: the features of each batching in :obj:`rows` must stay within
    5% of the seed's effect, whatever the CPU."""
    both = completer.complete(data, 'image', index)
    prompts = completer.prompts(data, index)
    ids = index.tolist()
    batched = _pixels(completer.generate(prompts, ids))
    single = _pixels(sum((completer.generate([p], [i]) for p, i in zip(prompts, ids)), []))
    assert abs(batched - single).max() <= 1
    other = _like(completer, seed=7).complete(data, 'image', index)
    seed_effect = (other - both).abs().max()
    assert seed_effect > 0.1
    for x in rows:
        assert x.shape == both.shape
        assert (x - both).abs().max() < 0.05 * seed_effect
    return both


def test_reproducible_and_batch_independent(completer):
    data = _graph()
    index = torch.tensor([1, 3])
    both = completer.complete(data, 'image', index)
    assert torch.equal(both, completer.complete(data, 'image', index))  # same call, same bits
    alone = torch.cat([completer.complete(data, 'image', torch.tensor([i])) for i in (1, 3)])
    # Order, batch size and the other entities of the call do not matter.
    swapped = completer.complete(data, 'image', torch.tensor([3, 0, 1]))[[2, 0]]
    small = _like(completer, batch_size=1).complete(data, 'image', index)
    _assert_batch_independent(completer, data, index, [alone, swapped, small])


def test_prompts_matter(completer):
    data = _graph()
    texts = list(TEXTS)
    texts[1] = 'a tall tower'
    x = completer.complete(data, 'image', torch.tensor([1]))
    y = _like(completer, texts=texts).complete(data, 'image', torch.tensor([1]))
    z = _like(completer, prompt_template='a drawing of {}').complete(data, 'image',
                                                                     torch.tensor([1]))
    assert not torch.allclose(x, y, atol=1e-4) and not torch.allclose(x, z, atol=1e-4)


def test_refiner(completer, refined):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    assert isinstance(refined.refiner, StableDiffusionXLImg2ImgPipeline)
    assert 'StableDiffusionXLImg2ImgPipeline' in repr(refined)
    data = _graph()
    index = torch.tensor([1, 3])
    base = completer.complete(data, 'image', index)
    x = refined.complete(data, 'image', index)
    assert x.shape == (2, DIM) and torch.isfinite(x).all()
    assert not torch.allclose(x, base, atol=1e-4)
    alone = torch.cat([refined.complete(data, 'image', index[i:i + 1]) for i in range(2)])
    _assert_batch_independent(refined, data, index, [alone])
    # Ensemble of experts: the base stops half-way, the refiner finishes.
    experts = _like(refined, high_noise_frac=0.5).complete(data, 'image', index)
    assert torch.isfinite(experts).all()
    assert not torch.allclose(experts, x, atol=1e-4)
    assert not torch.allclose(experts, base, atol=1e-4)


def test_texts_from_graph(completer):
    data = _graph()
    c = _like(completer, texts=None)
    with pytest.raises(ValueError, match='No entity texts'):
        c.completable(data, 'image')
    data['entity'].name = ['e0', 'e1', 'e2', 'e3', 'e4', 'e5']
    assert c.completable(data, 'image').tolist() == [False, True, False, True, True, True]
    assert c.prompts(data, torch.tensor([4])) == ['a photo of e4']
    data['entity'].text = list(TEXTS)  # preferred over the names
    assert c.completable(data, 'image').tolist() == [False, True, False, True, False, False]
    assert c.prompts(data, torch.tensor([1])) == ['a photo of a black cat']
    assert torch.equal(c.complete(data, 'image', torch.tensor([1])),
                       completer.complete(data, 'image', torch.tensor([1])))
    with pytest.raises(ValueError, match='has 5 entries'):
        _like(completer, texts=TEXTS[:5]).completable(data, 'image')


def test_new_modality(completer):
    data = _graph(with_image=False)
    assert completer.completable(data, 'image').tolist() == [True, True, True, True, False,
                                                             False]
    x = completer.complete(data, 'image', torch.tensor([0, 2]))
    assert x.shape == (2, DIM)
    assert completer.complete(data, 'image', torch.tensor([], dtype=torch.long)).shape == (0, DIM)


def test_eta_one(completer):
    # LBMKGC's Fig. 3 at eta = 1: every image dropped. The learned translator cannot complete
    # a modality no entity has, and says what to do; the generative completer (the paper's
    # LvMC) needs no example and fills every entity that has a text.
    from torch_mmkg.completion import TranslatorCompleter, completed_key, original_mask
    from torch_mmkg.transforms import CompleteModality, DropModality
    data = _graph()
    data['entity'].x_text = torch.randn(len(TEXTS), 3)
    data['entity'].mask_text = torch.ones(len(TEXTS), dtype=torch.bool)
    data.modalities = ['image', 'text']
    dropped = DropModality(1.0, modalities=['image'], seed=0)(data)
    assert not dropped['entity'].mask_image.any()
    with pytest.raises(ValueError, match=r"present for 0 of 6 entities.*eta < 1.*"
                                         r"DiffusionImageCompleter"):
        CompleteModality('image', TranslatorCompleter(epochs=1, progress=False))(dropped)
    out = CompleteModality('image', completer)(dropped)
    validate_mmkg(out)
    has_text = torch.tensor([True, True, True, True, False, False])
    ent = out['entity']
    assert torch.equal(ent.mask_image, has_text)
    assert torch.equal(ent[completed_key('image')], has_text)
    assert not original_mask(out, 'image').any()
    rows = has_text.nonzero().view(-1)
    assert torch.equal(ent.x_image[rows], completer.complete(dropped, 'image', rows))
    assert bool((ent.x_image[~has_text] == 0).all())


def test_errors(completer):
    data = _graph()
    with pytest.raises(ValueError, match=r'Entities \[4, 5\] .*no text'):
        completer.complete(data, 'image', torch.tensor([1, 4, 5]))
    with pytest.raises(ValueError, match=r'Entity ids \[6, -1\] .*out of range \[0, 6\)'):
        completer.complete(data, 'image', torch.tensor([1, 6, -1]))
    with pytest.raises(ValueError, match='1-d tensor of entity ids'):
        completer.complete(data, 'image', torch.tensor([1.0]))
    data['entity'].x_image = torch.cat([data['entity'].x_image, torch.ones(6, 1)], dim=1)
    with pytest.raises(ValueError, match='16-d features but .* is 17-d'):
        completer.complete(data, 'image', torch.tensor([1]))
    with pytest.raises(ValueError, match='image_processor'):
        DiffusionImageCompleter(completer.pipeline, completer.image_encoder)
    with pytest.raises(ValueError, match='prompt_template'):
        _like(completer, prompt_template='a photo of {name}')
    with pytest.raises(ValueError, match='high_noise_frac'):
        _like(completer, high_noise_frac=1.5)


def test_callable_encoder(completer):
    data = _graph()
    seen = []

    def encode(images):
        seen.append([im.size for im in images])
        return torch.stack([torch.arange(1., 5.) + len(seen) for _ in images])

    c = _like(completer, image_encoder=encode, image_processor=None, batch_size=2,
              normalize=True)
    data['entity'].x_image = data['entity'].x_image[:, :4].contiguous()
    x = c.complete(data, 'image', torch.tensor([1, 3, 0]))
    assert seen == [[(SIZE, SIZE)] * 2, [(SIZE, SIZE)]]
    assert x.shape == (3, 4)
    assert torch.allclose(x.norm(dim=1), torch.ones(3))

    bad = _like(completer, image_encoder=lambda images: torch.full((len(images), 4), float('nan')),
                image_processor=None, batch_size=2)
    with pytest.raises(ValueError, match=r'Non-finite or all-zero .* \[1, 3\]'):
        bad.complete(data, 'image', torch.tensor([1, 3]))


def test_missing_packages(monkeypatch):
    real = generative.importlib.util.find_spec
    monkeypatch.setattr(generative.importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'diffusers' else real(name, *a))
    with pytest.raises(ImportError, match=r'torch_mmkg\[generate\]'):
        DiffusionImageCompleter.from_pretrained('sdxl', 'clip')


def test_from_pretrained_falls_back_to_diffusion_pipeline(paths, monkeypatch):
    import diffusers

    def unknown(*args, **kwargs):
        raise ValueError("AutoPipeline can't find a pipeline linked to this class")

    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, 'from_pretrained', unknown)
    c = DiffusionImageCompleter.from_pretrained(paths['sdxl'], paths['clip'], texts=TEXTS,
                                                device='cpu', torch_dtype=torch.float32,
                                                **FAST)
    assert isinstance(c.pipeline, diffusers.StableDiffusionXLPipeline)
    assert c.complete(_graph(), 'image', torch.tensor([1])).shape == (1, DIM)


def test_from_pretrained_dtype(paths):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        c = DiffusionImageCompleter.from_pretrained(paths['sdxl'], paths['clip'],
                                                    refiner_path=paths['refiner'],
                                                    torch_dtype=torch.bfloat16, texts=TEXTS,
                                                    refiner_strength=0.5, **FAST)
    assert not [w for w in caught if 'torch_dtype' in str(w.message)]
    assert c.pipeline.unet.dtype == c.refiner.unet.dtype == torch.bfloat16
    assert c.image_encoder.dtype == torch.bfloat16
    x = c.complete(_graph(), 'image', torch.tensor([1, 3]))
    assert x.dtype == torch.float32 and x.shape == (2, DIM) and torch.isfinite(x).all()
