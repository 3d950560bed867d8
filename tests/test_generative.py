"""Whole-loss gradients of every model type; generative models: schedules, EMA, samplers, `netcli sample`, quality."""
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import netcli.config  # noqa: F401  (registers every layer and model)
from netcli import backend as B
from netcli.config import config_from_dict
from netcli.gradcheck import check_arrays
from netcli.layers.base import named_params, walk
from netcli.models.ddpm import cosine_betas, ddim_timesteps, ema_update, linear_betas
from netcli.app.quality import features_and_probs, frechet_distance, sample_quality
from netcli.registry import MODELS
from netcli.app.sample import sample_run
from netcli.app.evaluate import load_run
from netcli.train import train

MLP_AE = {"encoder": [{"type": "dense", "units": 6}, "tanh", {"type": "dense", "units": 3}],
          "decoder": [{"type": "dense", "units": 6}, "tanh", {"type": "dense", "units": 10}]}


def build(config: dict, shape: tuple, seed: int = 0):
    cls = MODELS.get(config["type"])
    model = cls(cls.Config(**config))
    model.setup(SimpleNamespace(input_shape=shape, target_shape=(), num_classes=None), np.random.default_rng(seed))
    return model


def zero_grads(model):
    for _, _, g in model.params():
        g[...] = 0


def check_model(model, forward, backward, rng) -> None:
    """Finite differences of ``forward() -> loss`` against the gradients ``backward()`` leaves in the params."""
    def grads():
        zero_grads(model)
        forward()
        backward()
        return {n: g.copy() for n, _, g in model.params()}

    report = check_arrays(forward, grads, {n: p for n, p, _ in model.params()}, rng, max_entries=60)
    assert report.ok(1e-6), str(report)


# -- whole-loss gradients, float64 ------------------------------------------------------


@pytest.mark.parametrize("reconstruction", ["bce", "mse"])
def test_autoencoder_loss_gradients(reconstruction, rng):
    with B.dtype_scope("float64"):
        model = build({"type": "autoencoder", "reconstruction": reconstruction, **MLP_AE}, (10,))
        x = rng.random((4, 10))
        check_model(model, lambda: model._step(x, True)[1]["loss"],
                    lambda: model.encoder.backward(model.decoder.backward(model.loss.backward())), rng)


@pytest.mark.parametrize("options", [{"likelihood": "bernoulli", "beta": 0.5},
                                     {"likelihood": "gaussian", "sigma": 0.3, "beta": 1.0},
                                     {"likelihood": "bernoulli", "beta": 0.0}])
def test_vae_loss_gradients_with_fixed_noise(options, rng):
    config = {"type": "vae", "latent_dim": 2, **MLP_AE, **options}
    config["encoder"] = [*MLP_AE["encoder"][:-1], {"type": "dense", "units": 4}]
    with B.dtype_scope("float64"):
        model = build(config, (10,))
        x, eps = rng.random((4, 10)), rng.standard_normal((4, 2))
        check_model(model, lambda: model._forward(x, eps, True)["loss"], model._backward, rng)


@pytest.mark.parametrize("denoiser,shape,schedule", [
    ({"type": "time_mlp_denoiser", "units": [8], "time_dim": 4}, (6,), "linear"),
    ({"type": "unet", "base_channels": 2, "channel_mults": [1, 2], "time_dim": 4, "zero_init": False},
     (1, 4, 4), "cosine"),
])
def test_ddpm_loss_gradients_with_fixed_timestep_and_noise(denoiser, shape, schedule, rng):
    with B.dtype_scope("float64"):
        model = build({"type": "ddpm", "timesteps": 50, "schedule": schedule, "denoiser": [denoiser]}, shape)
        x, eps, t = rng.random((3, *shape)), rng.standard_normal((3, *shape)), np.array([0, 9, 49])
        check_model(model, lambda: model.noise_loss(model.net, x, t, eps, True)["loss"],
                    lambda: model.net.backward(model.mse.backward()), rng)


@pytest.mark.parametrize("kind,target", [("classifier", "labels"), ("regressor", "values")])
def test_supervised_loss_gradients(kind, target, rng):
    layers = [{"type": "dense", "units": 5}, "tanh", {"type": "dense", "units": 3}]
    with B.dtype_scope("float64"):
        cls = MODELS.get(kind)
        model = cls(cls.Config(layers=layers))
        model.setup(SimpleNamespace(input_shape=(4,), target_shape=(3,) if kind == "regressor" else (),
                                    num_classes=3), np.random.default_rng(0))
        x = rng.standard_normal((6, 4))
        y = rng.integers(0, 3, 6) if target == "labels" else rng.standard_normal((6, 3))
        check_model(model, lambda: model.loss.forward(model.net.forward(x, True), y),
                    lambda: model.net.backward(model.loss.backward()), rng)


# -- loss values -------------------------------------------------------------------------------


def test_vae_loss_terms_match_their_formulas(rng):
    config = {"type": "vae", "latent_dim": 2, "beta": 0.25, **MLP_AE}
    config["encoder"] = [*MLP_AE["encoder"][:-1], {"type": "dense", "units": 4}]
    with B.dtype_scope("float64"):
        model = build(config, (10,))
        x, eps = rng.random((5, 10)), rng.standard_normal((5, 2))
        m = model._forward(x, eps, False)
        h = model.encoder.forward(x, False)
        mu, logvar = h[:, :2], h[:, 2:]
        logits = model.decoder.forward(mu + np.exp(logvar / 2) * eps, False)
        p = 1 / (1 + np.exp(-logits))
        recon = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p)) / 5
        kl = -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar)) / 5
        assert m["recon"] == pytest.approx(recon, rel=1e-10)
        assert m["kl"] == pytest.approx(kl, rel=1e-10)
        assert m["loss"] == pytest.approx(recon + 0.25 * kl, rel=1e-10)
        assert m["nelbo"] == pytest.approx(recon + kl, rel=1e-10)


def test_gaussian_vae_recon_is_a_negative_log_likelihood(rng):
    config = {"type": "vae", "latent_dim": 2, "likelihood": "gaussian", "sigma": 0.5, **MLP_AE}
    config["encoder"] = [*MLP_AE["encoder"][:-1], {"type": "dense", "units": 4}]
    with B.dtype_scope("float64"):
        model = build(config, (10,))
        x, eps = rng.random((3, 10)), rng.standard_normal((3, 2))
        recon = model._forward(x, eps, False)["recon"]
        h = model.encoder.forward(x, False)
        mean = model.decoder.forward(h[:, :2] + np.exp(h[:, 2:] / 2) * eps, False)
        nll = -np.sum(-0.5 * ((x - mean) / 0.5) ** 2 - np.log(0.5 * np.sqrt(2 * np.pi))) / 3
        assert recon == pytest.approx(nll, rel=1e-10)


def test_evaluation_noise_is_fixed_per_batch(rng):
    config = {"type": "vae", "latent_dim": 3, **MLP_AE}
    config["encoder"] = [*MLP_AE["encoder"][:-1], {"type": "dense", "units": 6}]
    model = build(config, (10,))
    x = rng.random((4, 10)).astype(np.float32)
    assert model.eval_batch(x, None) == model.eval_batch(x, None)
    assert model.train_batch(x, None) != model.train_batch(x, None)


# -- DDPM schedules, EMA, samplers -------------------------------------------------------------


def test_linear_schedule_ends_and_scaling():
    betas = linear_betas(1000, 1e-4, 0.02)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    assert np.all(np.diff(betas) > 0)
    short = linear_betas(250, 1e-4, 0.02)  # fewer steps, each larger: the same overall noise
    assert short[0] == pytest.approx(4e-4) and short[-1] == pytest.approx(0.08)


def test_cosine_schedule_follows_the_squared_cosine():
    T, s = 1000, 0.008
    betas = cosine_betas(T)
    abar = np.cumprod(1 - betas)
    f = np.cos((np.arange(1, T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2 / np.cos(s / (1 + s) * np.pi / 2) ** 2
    assert np.allclose(abar[:-20], f[:-20], rtol=1e-9)  # near the end beta is capped at 0.999
    assert np.all(np.diff(abar) < 0) and abar[0] > 0.9999 and abar[-1] < 1e-6
    assert betas.max() <= 0.999 and betas.min() > 0


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_model_alphas_cumprod_decrease_from_one_to_near_zero(schedule):
    model = build({"type": "ddpm", "schedule": schedule,
                   "denoiser": [{"type": "time_mlp_denoiser", "units": [4], "time_dim": 4}]}, (3,))
    abar = model.alphas_cumprod
    assert len(abar) == 1000 and np.all(np.diff(abar) < 0)
    assert 0.999 < abar[0] < 1 and abar[-1] < 1e-4


def test_ddim_timesteps_cover_both_ends():
    assert ddim_timesteps(1000, 1000).tolist() == list(range(1000))
    ts = ddim_timesteps(1000, 50)
    assert ts[0] == 0 and ts[-1] == 999 and len(ts) == 50
    assert ddim_timesteps(1000, 1).tolist() == [999]


def test_ema_update_formula():
    ema, value = np.array([1.0, 2.0]), np.array([3.0, -2.0])
    ema_update(ema, value, 0.9)
    assert np.allclose(ema, [0.9 * 1 + 0.1 * 3, 0.9 * 2 - 0.1 * 2])


def test_ema_follows_the_weights_with_a_warm_up(rng):
    model = build({"type": "ddpm", "timesteps": 50, "ema_decay": 0.5,
                   "denoiser": [{"type": "time_mlp_denoiser", "units": [4], "time_dim": 4}]}, (3,))
    expected = [p.copy() for _, p, _ in model.params()]
    assert all(np.array_equal(e, p) for (_, e, _), p in zip(named_params(model.ema_net), expected))
    for k in range(4):
        for (_, p, _) in model.params():  # stand-in for an optimizer step
            p += rng.standard_normal(p.shape).astype(p.dtype)
        model.update_ema()
        decay = min(0.5, (1 + k) / (10 + k))
        expected = [decay * e + (1 - decay) * p for e, (_, p, _) in zip(expected, model.params())]
    assert float(model.ema_updates) == 4
    for (_, e, _), want in zip(named_params(model.ema_net), expected):
        np.testing.assert_allclose(e, want, rtol=1e-6)


def oracle(model, x0):
    """A perfect denoiser for data that is the single point x0 (in [-1, 1])."""
    def predict_noise(x, t):
        ab = model.alphas_cumprod[t]
        return (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
    return predict_noise


@pytest.mark.parametrize("steps", [None, 1000, 37, 1])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_samplers_with_a_perfect_denoiser_return_the_data_point(steps, schedule, rng):
    with B.dtype_scope("float64"):
        model = build({"type": "ddpm", "schedule": schedule, "clip_denoised": False,
                       "denoiser": [{"type": "time_mlp_denoiser", "units": [4], "time_dim": 4}]}, (5,))
        x0 = rng.uniform(-1, 1, (2, 5))
        model.predict_noise = oracle(model, x0)
        out = model.denoise(rng.standard_normal((2, 5)), rng, steps)
        np.testing.assert_allclose(out, x0, atol=1e-8)


def test_one_step_ddim_is_the_x0_estimate_of_the_noise_prediction(rng):
    with B.dtype_scope("float64"):
        model = build({"type": "ddpm", "timesteps": 100, "clip_denoised": False,
                       "denoiser": [{"type": "time_mlp_denoiser", "units": [8], "time_dim": 4}]}, (5,))
        for _, p, _ in model.params():
            p[...] = rng.standard_normal(p.shape)
        x = rng.standard_normal((3, 5))
        ab = model.alphas_cumprod[99]
        want = (x - np.sqrt(1 - ab) * model.predict_noise(x, 99)) / np.sqrt(ab)
        np.testing.assert_allclose(model.denoise(x, rng, steps=1), want, rtol=1e-12)


def test_ancestral_step_is_the_posterior_mean_plus_its_noise(rng):
    with B.dtype_scope("float64"):
        model = build({"type": "ddpm", "timesteps": 50, "clip_denoised": False,
                       "denoiser": [{"type": "time_mlp_denoiser", "units": [4], "time_dim": 4}]}, (4,))
        x0, x, t = rng.uniform(-1, 1, (1, 4)), rng.standard_normal((1, 4)), 20
        model.predict_noise = oracle(model, x0)
        ab, ab_prev, beta = model.alphas_cumprod[t], model.alphas_cumprod[t - 1], model.betas[t]
        mean = np.sqrt(ab_prev) * beta / (1 - ab) * x0 + np.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * x
        var = (1 - ab_prev) / (1 - ab) * beta
        z = np.random.default_rng(5).standard_normal((1, 4))
        np.testing.assert_allclose(model.ancestral_step(x, t, np.random.default_rng(5)), mean + np.sqrt(var) * z)


# -- runs: checkpointed EMA, `netcli sample`, sample quality -------------------------------------


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    """Tiny 8x8 'digits': class k is a bright bar at row k (with noise), 4 classes."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 4, n)
        x = rng.uniform(0, 0.2, (n, 1, 8, 8)).astype(np.float32)
        x[np.arange(n), 0, 2 * y] = 0.9
        return x, y

    for name, n in (("train", 160), ("test", 40)):
        x, y = make(n)
        np.savez(root / f"{name}.npz", x=x, y=y)
    return root


def run_config(name, data, model, epochs=2):
    return config_from_dict({
        "name": name, "seed": 0,
        "data": {"dataset": "npz", "path": str(data / "train.npz"), "test_path": str(data / "test.npz"),
                 "batch_size": 32, "val_fraction": 0.2},
        "model": model, "optimizer": {"type": "adam", "lr": 3e-3}, "train": {"epochs": epochs}})


TINY_DDPM = {"type": "ddpm", "timesteps": 50, "ema_decay": 0.9,
             "denoiser": [{"type": "unet", "base_channels": 4, "channel_mults": [1, 2], "time_dim": 8}]}
TINY_VAE = {"type": "vae", "latent_dim": 2,
            "encoder": ["flatten", {"type": "dense", "units": 16}, "relu", {"type": "dense", "units": 4}],
            "decoder": [{"type": "dense", "units": 64}, {"type": "reshape", "shape": [1, 8, 8]}]}
TINY_AE = {"type": "autoencoder",
           "encoder": ["flatten", {"type": "dense", "units": 8}],
           "decoder": [{"type": "dense", "units": 64}, {"type": "reshape", "shape": [1, 8, 8]}]}


@pytest.fixture(scope="module")
def runs(image_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {name: train(run_config(name, image_data, model), root).run_dir
            for name, model in (("ddpm", TINY_DDPM), ("vae", TINY_VAE), ("ae", TINY_AE))}


def test_ema_weights_are_checkpointed_and_restored(runs):
    _, exp = load_run(runs["ddpm"], checkpoint="last")
    model = exp.model
    assert float(model.ema_updates) > 0
    saved = np.load(runs["ddpm"] / "checkpoints" / "last.npz")
    for name, e, _ in named_params(model.ema_net, "denoiser_ema."):
        np.testing.assert_array_equal(e, saved[f"buffer/{name}"])
    averaged, trained = next(named_params(model.ema_net))[1], next(named_params(model.net))[1]
    assert not np.array_equal(averaged, trained)


@pytest.mark.parametrize("steps", [None, 5])
def test_sample_run_writes_a_png_grid_and_the_samples(runs, steps, tmp_path):
    ticks = []
    result = sample_run(runs["ddpm"], n=6, seed=1, steps=steps, progress=lambda d, t: ticks.append((d, t)))
    assert result["png"].parent == runs["ddpm"] / "samples"
    samples = np.load(result["npy"])
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    total = 50 if steps is None else 5
    assert ticks[-1] == (total, total) and len(ticks) == total
    with Image.open(result["png"]) as img:
        assert img.size == (2 * (2 + 3 * 10), 2 * (2 + 2 * 10))  # 3 x 2 tiles of 8 px + 2 px gaps, scaled 2x
    again = sample_run(runs["ddpm"], n=6, seed=1, steps=steps, out=tmp_path / "again.png")
    np.testing.assert_array_equal(np.load(again["npy"]), samples)  # the seed fixes the samples


def test_autoencoder_samples_are_originals_beside_reconstructions(runs):
    result = sample_run(runs["ae"], n=4, seed=0)
    pairs = np.load(result["npy"])
    _, exp = load_run(runs["ae"])
    test_x = exp.splits.test_x
    assert pairs.shape == (4, 2, 1, 8, 8)
    assert all(any(np.array_equal(p, t) for t in test_x) for p in pairs[:, 0])
    np.testing.assert_allclose(pairs[:, 1], exp.model.reconstruct(pairs[:, 0]), rtol=1e-6)


def test_vae_interpolation_runs_between_two_test_images(runs):
    result = sample_run(runs["vae"], n=5, seed=3, interpolate=True)
    line = np.load(result["npy"])
    _, exp = load_run(runs["vae"])
    model = exp.model
    ends = [x for x in exp.splits.test_x
            if np.allclose(model.decode(model.encode(x[None])), line[0], atol=1e-6)
            or np.allclose(model.decode(model.encode(x[None])), line[-1], atol=1e-6)]
    assert len(ends) >= 2
    z = model.encode(np.stack(ends[:2]))
    np.testing.assert_allclose(line[2], model.decode(z.mean(0, keepdims=True))[0], atol=1e-6)


def test_options_that_do_not_apply_are_errors(runs):
    from netcli.errors import UserError

    with pytest.raises(UserError, match="interpolate needs a model that can encode and decode \\(vae\\); a ddpm model cannot"):
        sample_run(runs["ddpm"], n=2, interpolate=True)
    with pytest.raises(UserError, match="steps"):
        sample_run(runs["vae"], n=2, steps=3)


# -- sample quality ------------------------------------------------------------------------------


def test_frechet_distance_of_gaussians(rng):
    a = rng.standard_normal((2000, 4))
    assert abs(frechet_distance(a, a)) < 1e-8
    shift = np.array([1.0, -2.0, 0.0, 0.5])
    assert frechet_distance(a, a + shift) == pytest.approx(shift @ shift, rel=1e-6)
    # covariances C and 4C: tr(C + 4C - 2 (4 C^2)^(1/2)) = tr(C); the means differ by mean(a)
    m, c = a.mean(0), np.cov(a, rowvar=False)
    assert frechet_distance(a, 2 * a) == pytest.approx(m @ m + np.trace(c), rel=1e-6)


@pytest.fixture(scope="module")
def clf_dir(image_data, tmp_path_factory):
    clf_model = {"type": "classifier", "layers": ["flatten", {"type": "dense", "units": 16}, "relu",
                                                  {"type": "dense", "units": 4}]}
    return train(run_config("clf", image_data, clf_model, epochs=6), tmp_path_factory.mktemp("clf")).run_dir


def test_frechet_distance_of_singular_features_is_finite_and_silent(rng):
    a, b = rng.standard_normal((300, 5)), rng.standard_normal((300, 5)) + 1
    a[:, 2] = b[:, 2] = 0  # a dead ReLU unit: zero variance
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = frechet_distance(a, b)
    assert d == pytest.approx(frechet_distance(np.delete(a, 2, 1), np.delete(b, 2, 1)), abs=1e-3)


def test_sample_quality_scores_samples_with_a_classifier(runs, clf_dir):
    result = sample_quality(runs["vae"], clf_dir, n=50)
    m = result["metrics"]
    shares = [m[f"class_{k}_share"] for k in range(4)]
    assert sum(shares) == pytest.approx(1) and m["min_class_share"] == min(shares)
    assert 0 <= m["confident_share"] <= 1 and m["frechet_distance"] >= 0 and m["frechet_distance_real"] >= 0
    assert (runs["vae"] / "quality.json").exists()
    # the same classifier on real test images: the features of a set against itself are 0 apart
    _, clf = load_run(clf_dir)
    feats, probs = features_and_probs(clf.model, clf.splits.test_x)
    assert feats.shape == (40, 16) and np.allclose(probs.sum(1), 1)
    assert abs(frechet_distance(feats, feats)) < 1e-6


def test_eval_with_a_classifier_samples_with_the_steps_asked_for(runs, clf_dir):
    from tinyrun import invoke

    r = invoke("eval", runs["ddpm"], "--classifier", clf_dir, "-n", 20, "--steps", 5)
    assert r.exit_code == 0, r.output
    quality = json.loads((runs["ddpm"] / "quality.json").read_text())
    assert quality["sampler"] == "DDIM, 5 steps" and quality["metrics"]["samples"] == 20
    assert "DDIM, 5 steps" in r.output and quality["sampling_s"] >= 0
    r = invoke("eval", runs["vae"], "--classifier", clf_dir, "--steps", 5)
    assert r.exit_code == 2 and "--steps: the sampler of a vae model has no steps to set" in r.output
    r = invoke("eval", runs["ddpm"], "--steps", 5)
    assert r.exit_code == 2 and "give a classifier run" in r.output


def test_the_real_floor_does_not_depend_on_the_sampler(runs, clf_dir):
    # ancestral sampling draws far more noise than DDIM: the real training images compared must not follow it
    floors = [sample_quality(runs["ddpm"], clf_dir, n=20, steps=steps) for steps in (None, 5)]
    assert [q["sampler"] for q in floors] == ["ancestral, all steps", "DDIM, 5 steps"]
    assert len({q["metrics"]["frechet_distance_real"] for q in floors}) == 1


def test_the_averaged_denoiser_gets_batchnorm_statistics_and_they_are_checkpointed():
    """A batchnorm in the denoiser: its running statistics are averaged into the EMA network like the weights
    (they stayed at mean 0 / variance 1, so validation and sampling normalised with the wrong statistics)."""
    from netcli.train import model_arrays

    config = {"type": "ddpm", "timesteps": 50, "ema_decay": 0.5,
              "denoiser": [{"type": "batchnorm"}, {"type": "time_mlp_denoiser", "units": [8], "time_dim": 4}]}
    model = build(config, (6,))
    x = (np.random.default_rng(0).random((16, 6)) * 3 + 2).astype(np.float32)  # mean ~3.5: far from 0
    (bn,) = [layer for _, layer in walk(model.net) if layer.type_name == "batchnorm"]
    (ema_bn,) = [layer for _, layer in walk(model.ema_net) if layer.type_name == "batchnorm"]
    expected = ema_bn.buffers["running_mean"].copy()
    for k in range(5):
        decay = min(0.5, (1 + k) / (10 + k))  # update_ema averages the statistics before this batch's forward
        expected = decay * expected + (1 - decay) * bn.buffers["running_mean"]
        model.train_batch(x, None)
        model.parameters.zero_grad()
    np.testing.assert_allclose(ema_bn.buffers["running_mean"], expected, rtol=1e-6)
    assert ema_bn.buffers["running_mean"].min() > 0.5  # learnt, not the initial zeros
    arrays = model_arrays(model)
    assert {"buffer/denoiser_ema.0.running_mean", "buffer/denoiser_ema.0.running_var"} <= arrays.keys()
    # a fresh model loaded from those arrays evaluates exactly as the trained one
    fresh = build(config, (6,), seed=1)
    for k, target in model_arrays(fresh).items():
        target[...] = arrays[k]
    assert fresh.eval_batch(x, None) == model.eval_batch(x, None)
