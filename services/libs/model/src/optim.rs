//! AdamW (Loshchilov & Hutter 2019) with its moments exposed so checkpoints can resume exactly
//! (candle-nn's `AdamW` keeps them private), plus global-norm gradient clipping.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// One parameter and its moments.
#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// AdamW with β1 = 0.9, β2 = 0.999, ε = 1e-8 and decoupled weight decay.
#[derive(Debug)]
pub(crate) struct AdamW {
    slots: Vec<Slot>,
    step: usize,
    weight_decay: f64,
    clip_norm: f64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

impl AdamW {
    /// Optimise `vars`; `moments` (name → (m, v)) and `step` restore a previous state.
    pub(crate) fn new(
        vars: BTreeMap<String, Var>,
        mut moments: BTreeMap<String, (Tensor, Tensor)>,
        step: usize,
        weight_decay: f64,
        clip_norm: f64,
    ) -> Result<Self> {
        let mut slots = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            let (m, v) = match moments.remove(&name) {
                Some((m, v)) if m.dims() == var.dims() && v.dims() == var.dims() => (m, v),
                _ => (var.zeros_like()?, var.zeros_like()?),
            };
            slots.push(Slot { name, var, m, v });
        }
        Ok(Self {
            slots,
            step,
            weight_decay,
            clip_norm,
        })
    }

    /// One update with learning rate `lr`; returns the gradient norm before clipping.
    ///
    /// The norm costs one device sync for all parameters, not one each. On CPU the update is one
    /// pass over each parameter ([`Update::apply`]); elsewhere it is candle's ops, a dozen per
    /// parameter ([`Update::apply_ops`]).
    pub(crate) fn step(&mut self, grads: &GradStore, lr: f64) -> Result<f64> {
        let present: Vec<(usize, Tensor)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| grads.get(&s.var).map(|g| (i, g.detach())))
            .collect();
        let norm = if present.is_empty() {
            0.0
        } else {
            let sums = present
                .iter()
                .map(|(_, g)| g.sqr()?.sum_all())
                .collect::<Result<Vec<_>>>()?;
            let sums: Vec<f32> = Tensor::stack(&sums, 0)?
                .to_device(&candle_core::Device::Cpu)?
                .to_vec1()?;
            sums.iter().map(|&x| f64::from(x)).sum::<f64>().sqrt()
        };
        self.step += 1;
        let update = Update {
            scale: if norm > self.clip_norm {
                self.clip_norm / norm
            } else {
                1.0
            },
            lr,
            decay: 1.0 - lr * self.weight_decay,
            bc1: 1.0 - BETA1.powi(self.step as i32),
            bc2: 1.0 - BETA2.powi(self.step as i32),
        };
        for (i, g) in present {
            let s = &mut self.slots[i];
            if g.device().is_cpu() {
                update.apply(s, &g)?;
            } else {
                update.apply_ops(s, &g)?;
            }
        }
        Ok(norm)
    }

    /// Steps taken.
    #[cfg(test)]
    pub(crate) fn steps(&self) -> usize {
        self.step
    }

    /// (name, m, v) for every parameter.
    pub(crate) fn moments(&self) -> impl Iterator<Item = (&str, &Tensor, &Tensor)> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.m, &s.v))
    }
}

/// The scalars of one AdamW step.
#[derive(Debug, Clone, Copy)]
struct Update {
    /// Gradient clipping factor.
    scale: f64,
    lr: f64,
    /// 1 − lr · weight decay.
    decay: f64,
    /// Bias corrections 1 − β^step.
    bc1: f64,
    bc2: f64,
}

impl Update {
    /// The step for one parameter in one pass over host memory: m ← β1 m + (1 − β1) g,
    /// v ← β2 v + (1 − β2) g², θ ← decay · θ − lr · (m / bc1) / (√(v / bc2) + ε), with g the
    /// clipped gradient. The same arithmetic as [`Update::apply_ops`], in f32 as there.
    fn apply(&self, s: &mut Slot, g: &Tensor) -> Result<()> {
        let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let (g, mut m, mut v, mut theta) =
            (host(g)?, host(&s.m)?, host(&s.v)?, host(s.var.as_tensor())?);
        let f = |x: f64| x as f32;
        let (scale, b1, b2, bc1, bc2) =
            (f(self.scale), f(BETA1), f(BETA2), f(self.bc1), f(self.bc2));
        let (lr, decay, eps) = (f(self.lr), f(self.decay), f(EPS));
        for (((t, m), v), &g) in theta.iter_mut().zip(&mut m).zip(&mut v).zip(&g) {
            let g = g * scale;
            *m = *m * b1 + g * f(1.0 - BETA1);
            *v = *v * b2 + g * g * f(1.0 - BETA2);
            *t = *t * decay - (*m / bc1) / ((*v / bc2).sqrt() + eps) * lr;
        }
        let (shape, dev) = (s.var.shape().clone(), s.var.device().clone());
        s.m = Tensor::from_vec(m, &shape, &dev)?;
        s.v = Tensor::from_vec(v, &shape, &dev)?;
        s.var.set(&Tensor::from_vec(theta, &shape, &dev)?)
    }

    /// The same step as candle ops (on any device).
    fn apply_ops(&self, s: &mut Slot, g: &Tensor) -> Result<()> {
        // Detached so the moments do not keep every step's autograd graph alive.
        let g = (g.detach() * self.scale)?;
        s.m = ((&s.m * BETA1)? + (&g * (1.0 - BETA1))?)?.detach();
        s.v = ((&s.v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?.detach();
        let update = ((&s.m / self.bc1)? / ((&s.v / self.bc2)?.sqrt()? + EPS)?)?;
        let theta = ((s.var.as_tensor().detach() * self.decay)? - (update * self.lr)?)?;
        s.var.set(&theta)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn minimises_a_quadratic() -> anyhow::Result<()> {
        let x = Var::from_tensor(&Tensor::new(&[3f32, -2.0], &Device::Cpu)?)?;
        let mut opt = AdamW::new(
            BTreeMap::from([("x".to_owned(), x.clone())]),
            BTreeMap::new(),
            0,
            0.0,
            10.0,
        )?;
        for _ in 0..300 {
            let loss = x.as_tensor().sqr()?.sum_all()?;
            opt.step(&loss.backward()?, 0.05)?;
        }
        let v: Vec<f32> = x.as_tensor().to_vec1()?;
        assert!(v.iter().all(|x| x.abs() < 0.05), "{v:?}");
        assert_eq!(opt.steps(), 300);
        Ok(())
    }

    #[test]
    fn host_update_matches_candle_ops() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let r = |mean: f32| Tensor::randn(mean, 1.0, (3, 7), &dev);
        let mut host = Slot {
            name: "p".to_owned(),
            var: Var::from_tensor(&r(0.5)?)?,
            m: (r(0.0)? * 0.1)?,
            v: r(0.0)?.sqr()?,
        };
        // A separate variable with the same values (a variable passed to `from_tensor` is shared).
        let mut ops = Slot {
            name: "p".to_owned(),
            var: Var::from_tensor(&host.var.as_tensor().copy()?)?,
            m: host.m.clone(),
            v: host.v.clone(),
        };
        for step in 1..=5 {
            let g = Tensor::randn(0f32, 2.0, (3, 7), &dev)?;
            let u = Update {
                scale: 0.7,
                lr: 1e-2,
                decay: 1.0 - 1e-2 * 0.01,
                bc1: 1.0 - BETA1.powi(step),
                bc2: 1.0 - BETA2.powi(step),
            };
            u.apply(&mut host, &g)?;
            u.apply_ops(&mut ops, &g)?;
        }
        for (a, b) in [
            (host.var.as_tensor(), ops.var.as_tensor()),
            (&host.m, &ops.m),
            (&host.v, &ops.v),
        ] {
            let err = crate::testing::rel_err(a, b)?;
            assert!(err < 1e-6, "relative error {err}");
        }
        Ok(())
    }
}
