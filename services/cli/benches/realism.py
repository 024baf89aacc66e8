"""Realism of a generated field against the scene its checkpoint was trained on (not a test;
issue "seamless tiling and generate"): per band, the mean and standard deviation, the
semivariogram γ(h) = ½ E[(z(x+h) − z(x))²] along rows and columns, and the radially averaged power
spectrum at the wavelengths λ = 2–32 px, each as the generated/training ratio. Optionally renders
both fields side by side as a PNG (first three bands as RGB, the training scene's 2–98 %
range).

  .venv/bin/python services/cli/benches/realism.py TRAIN.zarr GENERATED.zarr [PNG]
"""
import sys

import numpy as np
import zarr

LAGS = [1, 2, 4, 8, 16, 32]
# Wavelengths of the spectrum: 2 px is the Nyquist limit, so λ = 1 px has no frequency.
WAVELENGTHS = [2, 4, 8, 16, 32]


def field(path):
    """The `data` array as [band, y, x] float64 (a leading time axis is folded into bands)."""
    a = np.asarray(zarr.open_group(path, mode="r")["data"][...], dtype=np.float64)
    return a.reshape(-1, *a.shape[-2:])


def semivariogram(plane, lag):
    """γ at `lag` pixels, rows and columns pooled, NaN pairs skipped."""
    dy = plane[lag:, :] - plane[:-lag, :]
    dx = plane[:, lag:] - plane[:, :-lag]
    d = np.concatenate([dy[np.isfinite(dy)], dx[np.isfinite(dx)]])
    return 0.5 * float(np.mean(d * d))


def spectrum(plane, wavelengths):
    """Radially averaged power spectral density at `wavelengths` (px), over the largest centred
    square without NaN (the mean is removed; a Hann window limits leakage)."""
    p = plane.copy()
    p[~np.isfinite(p)] = np.nanmean(p)
    n = min(p.shape)
    y0, x0 = (p.shape[0] - n) // 2, (p.shape[1] - n) // 2
    p = p[y0:y0 + n, x0:x0 + n]
    p = p - p.mean()
    w = np.hanning(n)
    power = np.abs(np.fft.fft2(p * np.outer(w, w))) ** 2 / (w * w).sum() ** 2
    f = np.fft.fftfreq(n)
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    out = []
    for lam in wavelengths:
        # The annulus of wavelengths within a factor 2^±0.25 of λ.
        ring = (radius >= 2 ** -0.25 / lam) & (radius < 2 ** 0.25 / lam)
        out.append(float(power[ring].mean()) if ring.any() else float("nan"))
    return out


def rgb(a, lo, hi):
    x = np.clip((a[:3] - lo[:3, None, None]) / (hi - lo)[:3, None, None], 0, 1)
    x = np.nan_to_num(x)
    if x.shape[0] < 3:
        x = np.repeat(x[:1], 3, axis=0)
    return (np.moveaxis(x, 0, -1) * 255).astype(np.uint8)


def main(train_path, generated_path, png=None):
    train, gen = field(train_path), field(generated_path)
    if train.shape[0] != gen.shape[0]:
        sys.exit(f"{train_path} has {train.shape[0]} bands, {generated_path} {gen.shape[0]}")
    print(f"training {train_path} {train.shape}, generated {generated_path} {gen.shape}")
    print("| band | mean ratio | std ratio | " + " | ".join(f"γ({h})" for h in LAGS)
          + " | " + " | ".join(f"P(λ={h})" for h in WAVELENGTHS) + " |")
    print("|---" * (3 + len(LAGS) + len(WAVELENGTHS)) + "|")
    worst = 0.0
    for b in range(train.shape[0]):
        t, g = train[b], gen[b]
        mean = np.nanmean(g) / np.nanmean(t)
        std = np.nanstd(g) / np.nanstd(t)
        gamma = [semivariogram(g, h) / semivariogram(t, h) for h in LAGS]
        psd = [a / b_ for a, b_ in zip(spectrum(g, WAVELENGTHS), spectrum(t, WAVELENGTHS))]
        worst = max([worst] + [abs(r - 1) for r in gamma + psd])
        print(f"| {b} | {mean:.3f} | {std:.3f} | " + " | ".join(f"{r:.3f}" for r in gamma)
              + " | " + " | ".join(f"{r:.3f}" for r in psd) + " |")
    print(f"largest deviation of a γ or P ratio from 1: {worst:.3f}")
    if png:
        from PIL import Image

        lo = np.nanpercentile(train, 2, axis=(1, 2))
        hi = np.nanpercentile(train, 98, axis=(1, 2))
        a, c = rgb(train, lo, hi), rgb(gen, lo, hi)
        h = max(a.shape[0], c.shape[0])
        pad = lambda x: np.pad(x, ((0, h - x.shape[0]), (0, 8), (0, 0)), constant_values=255)
        Image.fromarray(np.concatenate([pad(a), pad(c)], axis=1)).save(png)
        print(f"wrote {png} (training scene | generated field)")


if __name__ == "__main__":
    main(*sys.argv[1:])
