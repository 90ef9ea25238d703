"""transformers' Data2Vec-vision (``data2vec_vision.*``, model_type 'data2vec-vision'): BEiT's
architecture, loaded through the transformers format module by every door.

The reference models are transformers' own, tiny, with every parameter randomized.
"""
import os.path as osp
import sys

import torch
import transformers

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from hub_server import HubServer  # noqa: E402

import mmbeit  # noqa: E402,F401
from mmbeit.apis import get_model  # noqa: E402
from mmbeit.converters import convert_checkpoint, detect_format, load_pretrained  # noqa: E402
from mmbeit.models.backbones.beit import BEiT  # noqa: E402
from helpers import assert_close, randomize_  # noqa: E402  (tests/helpers.py)

TINY = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=64,
    patch_size=16,
    hidden_act='gelu',
    layer_scale_init_value=0.1,
    layer_norm_eps=1e-6)


def _model(arch: str, **kw):
    config = transformers.Data2VecVisionConfig(**dict(TINY, architectures=[arch], **kw))
    torch.manual_seed(0)
    return randomize_(getattr(transformers, arch)(config))


def _classifier():
    labels = {i: f'd2v {i}' for i in range(5)}
    return _model(
        'Data2VecVisionForImageClassification',
        image_size=32,
        use_relative_position_bias=True,
        use_mean_pooling=True,
        id2label=labels,
        label2id={
            v: k
            for k, v in labels.items()
        })


def _segmentor():
    labels = {i: f'class {i}' for i in range(4)}
    return _model(
        'Data2VecVisionForSemanticSegmentation',
        image_size=64,
        use_relative_position_bias=True,
        out_indices=[2, 3, 4, 5],
        pool_scales=[1, 2, 3, 6],
        auxiliary_channels=8,
        id2label=labels,
        label2id={
            v: k
            for k, v in labels.items()
        })


def _image(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def _save(model, folder) -> str:
    model.save_pretrained(str(folder), safe_serialization=True)
    return str(folder)


def test_detected_as_transformers_and_every_key_converted():
    ref = _classifier()
    state = ref.state_dict()
    assert any(k.startswith('data2vec_vision.') for k in state)
    assert detect_format(state) == 'transformers'
    canonical = convert_checkpoint(state, target=None)
    assert {k.split('.')[0] for k in canonical} == {'backbone', 'cls_head'}


def test_classifier_folder_get_model_and_load_checkpoint(tmp_path):
    """get_model(folder, pretrained=True) builds it from config.json and loads it; mmengine's
    load_checkpoint loads the .bin file into the same model."""
    from mmengine.runner import load_checkpoint
    ref = _classifier()
    folder = _save(ref, tmp_path / 'd2v')
    x = _image(32)
    with torch.no_grad():
        expected = ref(pixel_values=x).logits
    model = get_model(folder, pretrained=True)
    assert model.dataset_meta['classes'] == tuple(f'd2v {i}' for i in range(5))
    with torch.no_grad():
        assert_close(model(x, mode='tensor'), expected)

    fresh = get_model(folder, pretrained=False)
    torch.save(ref.state_dict(), tmp_path / 'pytorch_model.bin')
    load_checkpoint(fresh, str(tmp_path / 'pytorch_model.bin'), map_location='cpu')
    with torch.no_grad():
        assert_close(fresh(x, mode='tensor'), expected)


def test_classifier_hub_id(tmp_path, monkeypatch):
    """A hub repository of a Data2Vec-vision classifier: its config.json builds the model."""
    ref = _classifier()
    with HubServer() as server:
        monkeypatch.setenv('HF_ENDPOINT', server.url)
        monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf-cache'))
        monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
        server.add_folder('someone/data2vec-tiny', _save(ref, tmp_path / 'folder'))
        model = get_model('someone/data2vec-tiny', pretrained=True)
    x = _image(32)
    with torch.no_grad():
        assert_close(model(x, mode='tensor'), ref(pixel_values=x).logits)


def test_segmentor_folder(tmp_path):
    ref = _segmentor()
    model = get_model(_save(ref, tmp_path / 'seg'), pretrained=True)
    x = _image(64)
    with torch.no_grad():  # logits at 1/4 of the input, as transformers'
        assert_close(model.decode_head(model.extract_feat(x)), ref(pixel_values=x).logits)


def test_bare_model_with_a_shared_table_into_a_backbone():
    """A bare Data2VecVisionModel (its keys have no ``data2vec_vision.`` prefix) with the shared
    relative position table and the final norm, into a bare mmbeit.BEiT: every token matches."""
    ref = _model(
        'Data2VecVisionModel',
        image_size=32,
        use_relative_position_bias=False,
        use_shared_relative_position_bias=True,
        use_mean_pooling=False)
    ours = BEiT(
        arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
        img_size=32,
        out_type='raw',
        final_norm=True,
        use_rel_pos_bias=True,
        norm_eps=1e-6).eval()
    report = load_pretrained(ours, ref.state_dict())
    assert report.fmt == 'transformers' and not report.kept_init
    x = _image(32)
    with torch.no_grad():
        assert_close(ours(x)[0], ref(pixel_values=x).last_hidden_state)
