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
    pub(crate) fn step(&mut self, grads: &GradStore, lr: f64) -> Result<f64> {
        let mut sq = 0f64;
        for s in &self.slots {
            if let Some(g) = grads.get(&s.var) {
                sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        let norm = sq.sqrt();
        let scale = if norm > self.clip_norm {
            self.clip_norm / norm
        } else {
            1.0
        };
        self.step += 1;
        let bc1 = 1.0 - BETA1.powi(self.step as i32);
        let bc2 = 1.0 - BETA2.powi(self.step as i32);
        for s in &mut self.slots {
            let Some(g) = grads.get(&s.var) else { continue };
            // Detached so the moments do not keep every step's autograd graph alive.
            let g = (g.detach() * scale)?;
            s.m = ((&s.m * BETA1)? + (&g * (1.0 - BETA1))?)?.detach();
            s.v = ((&s.v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?.detach();
            let update = ((&s.m / bc1)? / ((&s.v / bc2)?.sqrt()? + EPS)?)?;
            let theta =
                ((s.var.as_tensor().detach() * (1.0 - lr * self.weight_decay))? - (update * lr)?)?;
            s.var.set(&theta)?;
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
}
