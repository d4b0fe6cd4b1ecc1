"""Session-wide tiny models, saved once per test run (building them is the slow part)."""

import pytest

from tests.engine import models as m


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def bert_dir(store):
    return m.tiny_bert(store / "bert")


@pytest.fixture(scope="session")
def bert_zip(store, bert_dir):
    return m.zip_folder(bert_dir, store / "bert.zip", top="my-bert")


@pytest.fixture(scope="session")
def gpt2_dir(store):
    return m.tiny_gpt2(store / "gpt2")


@pytest.fixture(scope="session")
def vit_dir(store):
    return m.tiny_vit(store / "vit")


@pytest.fixture(scope="session")
def vit_zip(store, vit_dir):
    return m.zip_folder(vit_dir, store / "vit.zip")


@pytest.fixture(scope="session")
def mlp_safetensors(store):
    return m.save_safetensors(store / "mlp.safetensors", "mlp", m.MLP_CONFIG)


@pytest.fixture(scope="session")
def cnn_safetensors(store):
    return m.save_safetensors(store / "cnn.safetensors", "small-cnn", m.CNN_CONFIG)


@pytest.fixture(scope="session")
def mlp_onnx(store):
    return m.export_onnx(store / "mlp.onnx", "mlp", m.MLP_CONFIG)


@pytest.fixture(scope="session")
def cnn_onnx(store):
    return m.export_onnx(store / "cnn.onnx", "small-cnn", m.CNN_CONFIG)


@pytest.fixture(scope="session")
def mlp_state_dict(store):
    return m.save_state_dict(store / "mlp_sd.pt", "mlp", m.MLP_CONFIG)
