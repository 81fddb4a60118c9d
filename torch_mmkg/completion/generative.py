r"""The generative completer of LBMKGC's modality completion (LvMC): images from entity texts."""
import importlib.util
from typing import Any, Callable, List, Optional, Sequence, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm import tqdm

from torch_mmkg.completion.base import ModalityCompleter
from torch_mmkg.data.mmkg import ENTITY, feature_key, get_modalities, mask_key

__all__ = ['DiffusionImageCompleter']

_INSTALL_HINT = 'pip install "torch_mmkg[generate]"'


def _require(*packages: str) -> None:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ImportError(f"DiffusionImageCompleter needs {missing}; install them with "
                          f"{_INSTALL_HINT}")


def _dtype_keyword(library: str) -> str:
    r"""The :obj:`from_pretrained` keyword of the model dtype: :obj:`dtype` where supported
    (transformers>=4.56 and recent diffusers deprecate :obj:`torch_dtype`), else
    :obj:`torch_dtype`."""
    from packaging.version import Version
    if library == 'transformers':
        import transformers
        return 'dtype' if Version(transformers.__version__) >= Version('4.56') else 'torch_dtype'
    import diffusers
    try:
        from diffusers.utils import deprecation_utils
        new = hasattr(deprecation_utils, '_resolve_dtype')
    except ImportError:
        new = False
    return 'dtype' if new or Version(diffusers.__version__) >= Version('1.0') else 'torch_dtype'


def _format_ids(ids: Sequence[int], limit: int = 20) -> str:
    ids = list(ids)
    head = ', '.join(str(i) for i in ids[:limit])
    return f"[{head}{', ...' if len(ids) > limit else ''}] ({len(ids)} in all)"


def _module_device(obj: Any) -> Optional[torch.device]:
    device = getattr(obj, 'device', None)
    if isinstance(device, (str, torch.device)):
        return torch.device(device)
    if isinstance(obj, torch.nn.Module):
        param = next(obj.parameters(), None)
        if param is not None:
            return param.device
    return None


def _module_dtype(obj: Any) -> Optional[torch.dtype]:
    dtype = getattr(obj, 'dtype', None)
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(obj, torch.nn.Module):
        param = next(obj.parameters(), None)
        if param is not None:
            return param.dtype
    return None


class DiffusionImageCompleter(ModalityCompleter):
    r"""The generative modality completer of LvMC from the `"Large Model-Driven Balanced
    Multimodal Knowledge Graph Completion" <https://github.com/guoynow/LBMKGC>`_ paper
    (LBMKGC): an entity that lacks an image gets one generated from its text, and the image's
    embedding becomes the entity's completed image feature.

    For entity :math:`i` with text :math:`t_i`, the prompt
    :math:`p_i = \texttt{prompt\_template.format}(t_i)` is fed to a text-to-image diffusion
    pipeline (Stable Diffusion XL in the paper):

    1. **Base.** Starting from Gaussian latents :math:`\mathbf{z}_T \sim \mathcal{N}(\mathbf{0},
       \mathbf{I})` drawn from a generator seeded with :math:`\textrm{seed} + i`, the base UNet
       :math:`\epsilon_\theta` denoises for :obj:`num_inference_steps` scheduler steps under
       classifier-free guidance of weight :math:`w` (:obj:`guidance_scale`), e.g. the
       deterministic DDIM step

       .. math::
           \hat{\epsilon}_t &= \epsilon_\theta(\mathbf{z}_t, \varnothing) + w \left(
           \epsilon_\theta(\mathbf{z}_t, p_i) - \epsilon_\theta(\mathbf{z}_t, \varnothing)
           \right)

           \mathbf{z}_{t-1} &= \sqrt{\bar{\alpha}_{t-1}} \, \frac{\mathbf{z}_t -
           \sqrt{1 - \bar{\alpha}_t} \, \hat{\epsilon}_t}{\sqrt{\bar{\alpha}_t}} +
           \sqrt{1 - \bar{\alpha}_{t-1}} \, \hat{\epsilon}_t

       (the step itself is whatever the pipeline's scheduler does).
    2. **Refiner** (optional). The base stops at the latents (:obj:`output_type="latent"`) and
       the SDXL image-to-image refiner denoises them further: either the last
       :math:`1 - \textrm{high\_noise\_frac}` of the noise schedule ("ensemble of experts",
       :obj:`high_noise_frac` set), or a partial re-noising of strength
       :obj:`refiner_strength` followed by denoising (default).
    3. **Decode.** The VAE decoder maps the final latents to an RGB image
       :math:`I_i = \mathcal{D}(\mathbf{z}_0)`.
    4. **Encode.** A CLIP image encoder embeds it,
       :math:`\mathbf{x}_i = \mathrm{CLIP}_{\mathrm{img}}(I_i)` (the projected
       :obj:`image_embeds`), optionally :math:`\ell_2`-normalised.

    Every entity has its own random generator, so its feature depends neither on the batch it
    is generated in nor on which other entities are completed.
    Build one from local model folders with :meth:`from_pretrained`; the transform
    :class:`~torch_mmkg.transforms.CompleteModality` writes the features into the graph.

    Args:
        pipeline: A :mod:`diffusers` text-to-image pipeline (e.g.
            :class:`diffusers.StableDiffusionXLPipeline`), called with :obj:`prompt`,
            :obj:`num_inference_steps`, :obj:`guidance_scale`, :obj:`generator` and, when set,
            :obj:`height` and :obj:`width`. Its own per-step progress bar is switched off.
        image_encoder: A :class:`transformers.CLIPVisionModelWithProjection` (its
            :obj:`image_embeds` are the features), or any callable mapping a list of
            :class:`PIL.Image.Image` to a :obj:`[B, F]` tensor.
        image_processor (transformers.CLIPImageProcessor, optional): The pre-processing of
            :obj:`image_encoder`; required when it is a :mod:`transformers` model.
            (default: :obj:`None`)
        refiner (optional): An SDXL image-to-image refiner pipeline (e.g.
            :class:`diffusers.StableDiffusionXLImg2ImgPipeline`). (default: :obj:`None`)
        texts (Sequence[str or None], optional): One text per entity for the prompts;
            :obj:`None` or blank = no text. If :obj:`None`, the graph's
            :obj:`data['entity'].text` is used when present, else :obj:`data['entity'].name`.
            (default: :obj:`None`)
        prompt_template (str, optional): The prompt, with :obj:`{}` standing for the entity
            text. (default: :obj:`"a photo of {}"`)
        num_inference_steps (int, optional): Denoising steps of the base (and of the refiner's
            full schedule). (default: :obj:`30`)
        guidance_scale (float, optional): The classifier-free guidance weight :math:`w`.
            (default: :obj:`5.0`)
        height (int, optional): Image height in pixels; :obj:`None` for the pipeline's
            default. (default: :obj:`None`)
        width (int, optional): Image width in pixels; :obj:`None` for the pipeline's default.
            (default: :obj:`None`)
        batch_size (int, optional): Prompts per pipeline call. (default: :obj:`4`)
        seed (int, optional): Entity :math:`i` is generated from a CPU
            :class:`torch.Generator` seeded with :obj:`seed + i`. (default: :obj:`0`)
        normalize (bool, optional): :math:`\ell_2`-normalise the embeddings.
            (default: :obj:`False`)
        progress (bool, optional): Show a :obj:`tqdm` progress bar over the batches.
            (default: :obj:`True`)
        high_noise_frac (float, optional): With a refiner, the fraction of the noise schedule
            denoised by the base (:obj:`denoising_end`) before the refiner takes over
            (:obj:`denoising_start`), e.g. :obj:`0.8`; :obj:`None` lets the base denoise fully
            and the refiner re-noise with :obj:`refiner_strength`. (default: :obj:`None`)
        refiner_strength (float, optional): The refiner's :obj:`strength` when
            :obj:`high_noise_frac` is :obj:`None`; it runs
            :obj:`int(num_inference_steps * refiner_strength)` steps, which must be at least one.
            (default: :obj:`0.3`)

    Shapes:
        - **completable:** data :math:`\to` bool :math:`(N)`
        - **complete:** data, index :math:`(K)` :math:`\to` float32 CPU features
          :math:`(K, F)`, :math:`F` the image encoder's embedding size

    Raises:
        ImportError: from :meth:`from_pretrained`, when :mod:`diffusers` or :mod:`transformers`
            is not installed.
    """
    def __init__(
        self,
        pipeline: Any,
        image_encoder: Union[torch.nn.Module, Callable[[List[Any]], Tensor]],
        image_processor: Optional[Any] = None,
        refiner: Optional[Any] = None,
        texts: Optional[Sequence[Optional[str]]] = None,
        prompt_template: str = 'a photo of {}',
        num_inference_steps: int = 30,
        guidance_scale: float = 5.0,
        height: Optional[int] = None,
        width: Optional[int] = None,
        batch_size: int = 4,
        seed: int = 0,
        normalize: bool = False,
        progress: bool = True,
        high_noise_frac: Optional[float] = None,
        refiner_strength: float = 0.3,
    ):
        if not callable(pipeline):
            raise ValueError(f"'pipeline' must be a callable diffusers pipeline, got "
                             f"{type(pipeline).__name__}")
        if not callable(image_encoder):
            raise ValueError(f"'image_encoder' must be a CLIP vision model or a callable, got "
                             f"{type(image_encoder).__name__}")
        self._is_hf_encoder = isinstance(image_encoder, torch.nn.Module) and hasattr(
            image_encoder, 'config')
        if self._is_hf_encoder and image_processor is None:
            raise ValueError(f"'image_processor' (a transformers CLIPImageProcessor) is "
                             f"required with the model {type(image_encoder).__name__}")
        if refiner is not None and not callable(refiner):
            raise ValueError(f"'refiner' must be a callable diffusers pipeline, got "
                             f"{type(refiner).__name__}")
        try:
            prompt_template.format('x')
        except (IndexError, KeyError, ValueError) as e:
            raise ValueError(f"prompt_template {prompt_template!r} must hold one '{{}}' "
                             f"field: {e}") from None
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if int(num_inference_steps) < 1:
            raise ValueError(f"num_inference_steps must be positive, got "
                             f"{num_inference_steps}")
        if high_noise_frac is not None and not 0.0 < float(high_noise_frac) < 1.0:
            raise ValueError(f"high_noise_frac must lie in (0, 1), got {high_noise_frac}")
        if not 0.0 < float(refiner_strength) <= 1.0:
            raise ValueError(f"refiner_strength must lie in (0, 1], got {refiner_strength}")

        self.pipeline = pipeline
        self.image_encoder = image_encoder
        self.image_processor = image_processor
        self.refiner = refiner
        self.texts = None if texts is None else list(texts)
        self.prompt_template = prompt_template
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.height = height
        self.width = width
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.normalize = normalize
        self.progress = progress
        self.high_noise_frac = None if high_noise_frac is None else float(high_noise_frac)
        self.refiner_strength = float(refiner_strength)
        for pipe in (pipeline, refiner):
            set_config = getattr(pipe, 'set_progress_bar_config', None)
            if set_config is not None:
                set_config(disable=True)

    @classmethod
    def from_pretrained(
        cls,
        pipeline_path: str,
        image_encoder_path: str,
        refiner_path: Optional[str] = None,
        device: Optional[Union[str, torch.device]] = None,
        torch_dtype: Optional[torch.dtype] = None,
        local_files_only: bool = True,
        **kwargs,
    ) -> 'DiffusionImageCompleter':
        r"""Loads the pipelines and the image encoder from (local) model folders.

        Args:
            pipeline_path (str): A :mod:`diffusers` text-to-image pipeline folder (e.g. SDXL
                base), loaded with :class:`diffusers.AutoPipelineForText2Image` (or
                :class:`diffusers.DiffusionPipeline` when the auto class does not know it).
            image_encoder_path (str): A folder holding a
                :class:`transformers.CLIPVisionModelWithProjection` and its
                :class:`transformers.CLIPImageProcessor` configuration.
            refiner_path (str, optional): An SDXL refiner folder, loaded with
                :class:`diffusers.AutoPipelineForImage2Image`. (default: :obj:`None`)
            device (str or torch.device, optional): Where the models run; :obj:`None` keeps
                them where they load (the CPU). (default: :obj:`None`)
            torch_dtype (torch.dtype, optional): The dtype of the models, e.g.
                :obj:`torch.float16` on a GPU; :obj:`None` for their default (float32).
                (default: :obj:`None`)
            local_files_only (bool, optional): Never touch the network (model names must then
                be in the local Hugging Face cache). (default: :obj:`True`)
            **kwargs (optional): The other arguments of :class:`DiffusionImageCompleter`.
        """
        _require('diffusers', 'transformers')
        import diffusers
        import transformers

        load = dict(local_files_only=local_files_only)
        if torch_dtype is not None:
            load[_dtype_keyword('diffusers')] = torch_dtype
        try:
            pipeline = diffusers.AutoPipelineForText2Image.from_pretrained(pipeline_path, **load)
        except Exception as auto_error:  # not an auto-pipeline class: the generic loader
            try:
                pipeline = diffusers.DiffusionPipeline.from_pretrained(pipeline_path, **load)
            except Exception as e:
                raise e from auto_error
        refiner = None
        if refiner_path is not None:
            refiner = diffusers.AutoPipelineForImage2Image.from_pretrained(refiner_path, **load)
        encoder_load = dict(local_files_only=local_files_only)
        if torch_dtype is not None:
            encoder_load[_dtype_keyword('transformers')] = torch_dtype
        image_encoder = transformers.CLIPVisionModelWithProjection.from_pretrained(
            image_encoder_path, **encoder_load)
        image_processor = transformers.CLIPImageProcessor.from_pretrained(
            image_encoder_path, local_files_only=local_files_only)

        for model in (pipeline, refiner, image_encoder):
            if model is None:
                continue
            if device is not None:
                model.to(device)
            for module in ([model] if isinstance(model, torch.nn.Module) else
                           list(getattr(model, 'components', {}).values())):
                if isinstance(module, torch.nn.Module):
                    module.eval()
        return cls(pipeline, image_encoder, image_processor=image_processor, refiner=refiner,
                   **kwargs)

    # -- texts ---------------------------------------------------------------------------------
    def entity_texts(self, data: HeteroData) -> List[Optional[str]]:
        r"""The stripped text of every entity (:obj:`None` where it has none): :obj:`texts`,
        else :obj:`data['entity'].text`, else :obj:`data['entity'].name`."""
        store = data[ENTITY]
        N = int(store.num_nodes)
        if self.texts is not None:
            texts, what = self.texts, "'texts'"
        elif 'text' in store:
            texts, what = store.text, f"data['{ENTITY}'].text"
        elif 'name' in store:
            texts, what = store.name, f"data['{ENTITY}'].name"
        else:
            raise ValueError(f"No entity texts: pass 'texts' or give the graph "
                             f"data['{ENTITY}'].text or .name")
        if len(texts) != N:
            raise ValueError(f"{what} has {len(texts)} entries but the graph has {N} entities")
        out = []
        for i, t in enumerate(texts):
            if t is not None and not isinstance(t, str):
                raise ValueError(f"{what}[{i}] is not a string: {t!r}")
            t = t.strip() if t is not None else ''
            out.append(t or None)
        return out

    def prompts(self, data: HeteroData, index: Tensor) -> List[str]:
        r"""The prompts of the entities :obj:`index` (checked as in :meth:`complete`)."""
        index = self._check_index(data, index)
        texts = self.entity_texts(data)
        missing = [i for i in index.tolist() if texts[i] is None]
        if missing:
            raise ValueError(f"Entities {_format_ids(missing)} have no text to write a prompt "
                             f"from")
        return [self.prompt_template.format(texts[i]) for i in index.tolist()]

    @staticmethod
    def _check_index(data: HeteroData, index) -> Tensor:
        index = torch.as_tensor(index)
        if index.dim() == 0:
            index = index.view(1)
        if index.dim() != 1 or index.is_floating_point() or index.dtype == torch.bool:
            raise ValueError(f"index must be a 1-d tensor of entity ids, got "
                             f"{index.dtype} {tuple(index.shape)}")
        index = index.long().cpu()
        N = int(data[ENTITY].num_nodes)
        bad = (index < 0) | (index >= N)
        if bad.any():
            raise ValueError(f"Entity ids {_format_ids(index[bad].tolist())} are out of range "
                             f"[0, {N})")
        return index

    # -- ModalityCompleter ---------------------------------------------------------------------
    def completable(self, data: HeteroData, target: str) -> Tensor:
        r"""The :obj:`[N]` bool mask of entities lacking :obj:`target` (all of them if the
        graph has no such modality yet) that have a text to write a prompt from."""
        store = data[ENTITY]
        N = int(store.num_nodes)
        if target in get_modalities(data):
            lacking = ~store[mask_key(target)].cpu()
        else:
            lacking = torch.ones(N, dtype=torch.bool)
        has_text = torch.tensor([t is not None for t in self.entity_texts(data)],
                                dtype=torch.bool)
        return lacking & has_text

    def complete(self, data: HeteroData, target: str, index: Tensor) -> Tensor:
        r"""Generates and encodes an image for each entity of :obj:`index`.

        Returns:
            Tensor: the float32 CPU :obj:`[len(index), F]` features, rows in the order of
            :obj:`index`.

        Raises:
            ValueError: for entity ids out of range, entities without text, an embedding
                width other than the graph's :obj:`target` width, or non-finite or all-zero
                embeddings.
        """
        prompts = self.prompts(data, index)
        index = self._check_index(data, index)
        width = None
        if target in get_modalities(data):
            width = int(data[ENTITY][feature_key(target)].size(1))
        if index.numel() == 0:
            return torch.empty(0, width if width is not None else self._embedding_dim())

        name = type(self.pipeline).__name__
        if self.refiner is not None:
            name += f' + {type(self.refiner).__name__}'
        starts = range(0, len(prompts), self.batch_size)
        out = []
        for start in tqdm(starts, desc=f'Generating images ({name})', unit='batch',
                          disable=not self.progress):
            ids = index[start:start + self.batch_size].tolist()
            images = self.generate(prompts[start:start + self.batch_size], ids)
            emb = self.encode(images)
            if emb.dim() != 2 or emb.size(0) != len(ids):
                raise ValueError(f"The image encoder returned shape {tuple(emb.shape)} for "
                                 f"{len(ids)} images (expected [{len(ids)}, F])")
            out.append(emb)
        x = torch.cat(out, dim=0)
        if width is not None and x.size(1) != width:
            raise ValueError(f"The image encoder returns {x.size(1)}-d features but "
                             f"data['{ENTITY}'].{feature_key(target)} is {width}-d")
        bad = ~torch.isfinite(x).all(dim=1) | ~(x != 0).any(dim=1)
        if bad.any():
            raise ValueError(f"Non-finite or all-zero image features for entities "
                             f"{_format_ids(index[bad].tolist())}")
        return x

    # -- generation and encoding ---------------------------------------------------------------
    def generate(self, prompts: Sequence[str], ids: Sequence[int]) -> List[Any]:
        r"""Generates one :class:`PIL.Image.Image` per prompt; prompt :obj:`k` uses a CPU
        generator seeded with :obj:`seed + ids[k]`."""
        prompts = list(prompts)
        generators = [torch.Generator(device='cpu').manual_seed(self.seed + int(i))
                      for i in ids]
        kwargs = dict(num_inference_steps=self.num_inference_steps,
                      guidance_scale=self.guidance_scale)
        size = {k: v for k, v in (('height', self.height), ('width', self.width))
                if v is not None}
        if self.refiner is None:
            return list(self.pipeline(prompt=prompts, generator=generators, output_type='pil',
                                      **size, **kwargs).images)
        base_kwargs, refiner_kwargs = {}, {}
        if self.high_noise_frac is not None:
            base_kwargs['denoising_end'] = self.high_noise_frac
            refiner_kwargs['denoising_start'] = self.high_noise_frac
        else:
            refiner_kwargs['strength'] = self.refiner_strength
        latents = self.pipeline(prompt=prompts, generator=generators, output_type='latent',
                                **size, **kwargs, **base_kwargs).images
        return list(self.refiner(prompt=prompts, image=latents, generator=generators,
                                 output_type='pil', **kwargs, **refiner_kwargs).images)

    def encode(self, images: Sequence[Any]) -> Tensor:
        r"""Embeds :obj:`images` with the image encoder into a float32 CPU :obj:`[B, F]`
        tensor (:math:`\ell_2`-normalised if :obj:`normalize`)."""
        images = list(images)
        with torch.inference_mode():
            if self._is_hf_encoder:
                inputs = self.image_processor(images=images, return_tensors='pt')
                pixels = inputs['pixel_values']
                device, dtype = (_module_device(self.image_encoder),
                                 _module_dtype(self.image_encoder))
                pixels = pixels.to(device=device, dtype=dtype)
                output = self.image_encoder(pixel_values=pixels)
                emb = getattr(output, 'image_embeds', None)
                if emb is None:
                    raise ValueError(f"{type(self.image_encoder).__name__} returns no "
                                     f"'image_embeds'; use a CLIPVisionModelWithProjection")
            else:
                emb = self.image_encoder(images)
            emb = torch.as_tensor(emb).detach().float().cpu()
        if self.normalize and emb.dim() == 2:
            emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        return emb

    def _embedding_dim(self) -> int:
        config = getattr(self.image_encoder, 'config', None)
        dim = getattr(config, 'projection_dim', None)
        return int(dim) if dim is not None else 0

    def __repr__(self) -> str:
        refiner = '' if self.refiner is None else f', refiner={type(self.refiner).__name__}'
        return (f'{self.__class__.__name__}({type(self.pipeline).__name__}{refiner}, '
                f'encoder={type(self.image_encoder).__name__}, '
                f'steps={self.num_inference_steps})')
