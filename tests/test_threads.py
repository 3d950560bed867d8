"""The engine's own threads: layers that split the batch over threads compute exactly what one thread does."""
import numpy as np
import pytest

from netcli import backend as B
from netcli.gradcheck import make_layer


def test_parallel_keeps_the_order_of_its_items_and_raises_their_errors(threads):
    threads(3)
    assert B.parallel(lambda i: i * i, list(range(7))) == [i * i for i in range(7)]

    def fail(i):
        if i == 2:
            raise ValueError("item 2")
        return i

    with pytest.raises(ValueError, match="item 2"):
        B.parallel(fail, [0, 1, 2])


def test_parallel_inside_a_share_runs_serially_instead_of_waiting_on_itself(threads):
    import threading

    threads(2)
    result = []
    call = threading.Thread(daemon=True, target=lambda: result.append(
        B.parallel(lambda i: B.parallel(lambda j: 10 * i + j, [0, 1, 2]), [0, 1, 2, 3])))
    call.start()
    call.join(timeout=10)  # a deadlock fails here instead of hanging the suite
    assert result == [[[10 * i + j for j in range(3)] for i in range(4)]]


@pytest.mark.parametrize("n,k", [(10, 3), (2, 3), (1, 2), (64, 2)])
def test_batch_chunks_cover_the_batch_once(threads, n, k):
    threads(k)
    chunks = B.batch_chunks(np.zeros((n, 5)))
    assert len(chunks) == min(n, k)
    assert [i for s in chunks for i in range(n)[s]] == list(range(n))


def test_small_work_stays_on_one_thread(monkeypatch):
    before = B.threads()
    B.set_threads(2)
    try:
        assert len(B.batch_chunks(np.zeros((64, 10)))) == 1  # 640 entries: not worth a thread
        assert len(B.batch_chunks(np.zeros((64, 32, 28, 28)))) == 2
    finally:
        B.set_threads(before)


def test_thread_count_follows_the_variables_that_limit_blas(monkeypatch):
    before = B.threads()
    try:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
        B.set_threads(None)
        assert B.threads() == 3
        monkeypatch.delenv("OPENBLAS_NUM_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        B.set_threads(None)
        assert B.threads() == 1
    finally:
        B.set_threads(before)


# Every layer that splits its work: (type, config, input shape, training, input gradient wanted)
SPLIT = [
    ("conv2d", {"filters": 4, "kernel": 3, "padding": 1}, (9, 6, 5), True, True),  # channel-last
    ("conv2d", {"filters": 3, "kernel": 3, "stride": 2}, (2, 7, 6), True, True),  # channel-first
    ("conv2d", {"filters": 3, "kernel": 2}, (2, 5, 5), True, False),  # first layer: no input gradient
    ("batchnorm", {}, (3, 4, 5), True, True),
    ("batchnorm", {}, (3, 4, 5), False, True),
    ("batchnorm", {}, (6,), True, True),
    ("relu", {}, (3, 4, 4), True, True),
    ("gelu", {}, (3, 4), True, True),
    ("sigmoid", {}, (5,), True, True),
    ("maxpool2d", {"size": 2}, (3, 4, 6), True, True),
    ("dense", {"units": 5}, (7,), True, True),
    ("dense", {"units": 4}, (3, 6), True, False),  # over the last axis of a sequence
    ("lstm", {"units": 3, "bidirectional": True}, (4, 2), True, True),
    ("gru", {"units": 3, "return_sequences": True, "bidirectional": True}, (4, 2), True, True),
    ("rnn", {"units": 3, "return_sequences": True}, (4, 2), True, True),
    ("layernorm", {}, (4, 5), True, True),
    ("layernorm", {"normalized_dims": 2, "affine": False}, (4, 5), True, True),
    ("multihead_attention", {"heads": 2, "causal": True}, (5, 4), True, True),
    ("multihead_attention", {"heads": 2, "fused_qkv": False}, (5, 4), False, True),
]


def run_layer(layer_type, config, in_shape, training, input_grad, batch=7):
    with B.dtype_scope("float64"):
        layer = make_layer(layer_type, config)
        layer.setup(in_shape, np.random.default_rng(0))
        layer.needs_input_grad = input_grad
        rng = np.random.default_rng(1)
        x = np.round(rng.standard_normal((batch, *in_shape)), 1)  # ties for max pooling
        y = layer.forward(x, training)
        dx = layer.backward(rng.standard_normal(y.shape))
        return y, dx, {k: g.copy() for k, g in layer.grads.items()}


@pytest.mark.parametrize("layer_type,config,in_shape,training,input_grad", SPLIT,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(SPLIT)])
def test_split_layers_match_one_thread(threads, layer_type, config, in_shape, training, input_grad):
    threads(1)
    y1, dx1, g1 = run_layer(layer_type, config, in_shape, training, input_grad)
    threads(3)
    y3, dx3, g3 = run_layer(layer_type, config, in_shape, training, input_grad)
    np.testing.assert_allclose(y3, y1, rtol=1e-12, atol=1e-12)
    if input_grad:
        np.testing.assert_allclose(dx3, dx1, rtol=1e-12, atol=1e-12)
    else:
        assert dx1 is None and dx3 is None
    assert g1.keys() == g3.keys()
    for name in g1:
        np.testing.assert_allclose(g3[name], g1[name], rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("spec", [{"type": "adam", "weight_decay": 0.1}, {"type": "adamw"},
                                  {"type": "sgd", "momentum": 0.9, "nesterov": True}, {"type": "rmsprop"}])
def test_optimizer_steps_in_parts_match_one_thread(threads, spec):
    from netcli.optim import make_optimizer

    def run():
        rng = np.random.default_rng(0)
        params = [(f"p{i}", rng.standard_normal(shape), np.zeros(shape)) for i, shape in enumerate([(7, 5), (3,)])]
        opt = make_optimizer({**spec, "lr": 0.1}, params)
        for _ in range(3):
            for _, _, g in params:
                g[...] = rng.standard_normal(g.shape)
            opt.step(0.1)
        return [p for _, p, _ in params]

    threads(1)
    one = run()
    start = np.random.default_rng(0).standard_normal((7, 5))
    assert np.abs(one[0] - start).min() > 1e-4  # every entry moved
    threads(3)
    for a, b in zip(run(), one):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_every_blas_library_runs_on_one_thread_once_the_engine_computes():
    """The engine's threads split the work; a BLAS left threading would spin on their cores.

    scipy's BLAS (Adam's axpy) is a second OpenBLAS, loaded late: it gets the same limit.
    """
    from threadpoolctl import threadpool_info

    B.threads()
    B.blas_funcs(("axpy",), np.float32)
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    assert blas and all(i["num_threads"] == 1 for i in blas), blas
