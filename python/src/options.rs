//! The optimisers' settings from a JSON object of Python names (the command line's options,
//! underscored: `iters`, `gn_size`, `lr`, …), each missing one the Rust `Default`'s.

use std::time::Duration;

use newton_wgpu::data::Augment;
use newton_wgpu::optim::cg::PreconditionerOptions;
use newton_wgpu::optim::newton::NewtonOptions;
use newton_wgpu::optim::sgd::SgdOptions;
use newton_wgpu::optim::sgn::SgnOptions;
use pyo3::prelude::*;
use serde_json::{json, Map, Value};

use crate::errors::raise;

/// A run's settings: the optimiser's, the chunk size on the device and the seed.
pub struct Options {
    pub method: Method,
    pub bsize: usize,
    pub seed: u64,
}

pub enum Method {
    Newton(NewtonOptions),
    Sgd(SgdOptions),
    Sgn(SgnOptions),
}

/// The chunk size's default, the command line's.
const BSIZE: usize = 1024;

fn seconds(budget: Option<Duration>) -> Value {
    budget.map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

impl Options {
    /// The settings of `optimizer` and their defaults, as a JSON object.
    pub fn defaults(py: Python<'_>, optimizer: &str) -> PyResult<String> {
        let precondition = |p: &Option<PreconditionerOptions>| p.is_some();
        let probes = PreconditionerOptions::default().probes;
        let table = match optimizer {
            "newton" => {
                let o = NewtonOptions::default();
                json!({"iters": o.iter_max, "gn_size": o.gn_size, "xi": o.xi, "cg_max": o.cg_max,
                       "lambda": o.lambda, "drop": o.drop, "boost": o.boost, "eta": o.eta,
                       "cg_check_every": o.cg_check_every, "grad_tol": o.grad_tol,
                       "time_budget": seconds(o.time_budget), "precondition": precondition(&o.precondition),
                       "probes": probes, "bsize": BSIZE, "augment": o.augment.to_string()})
            }
            "sgd" => {
                let o = SgdOptions::default();
                json!({"epochs": o.epochs, "batch": o.batch, "lr": o.lr, "momentum": o.momentum,
                       "decay": o.decay, "time_budget": seconds(o.time_budget),
                       "evals_per_epoch": o.evals_per_epoch, "bsize": BSIZE, "augment": o.augment.to_string()})
            }
            "sgn" => {
                let o = SgnOptions::default();
                json!({"epochs": o.epochs, "batch": o.batch, "gn_size": o.gn_size, "cg_steps": o.cg_steps,
                       "xi": o.xi, "lambda": o.lambda, "drop": o.drop, "boost": o.boost,
                       "cg_check_every": o.cg_check_every, "time_budget": seconds(o.time_budget),
                       "evals_per_epoch": o.evals_per_epoch, "precondition": precondition(&o.precondition),
                       "probes": probes, "bsize": BSIZE, "augment": o.augment.to_string()})
            }
            _ => return Err(unknown_optimizer(py, optimizer)),
        };
        Ok(table.to_string())
    }

    /// `optimizer`'s settings from the JSON object `given` (missing ones the defaults), with
    /// `seed` for the initialisation, the subsamples and the shuffles.
    pub fn parse(py: Python<'_>, optimizer: &str, given: &str, seed: u64) -> PyResult<Self> {
        let defaults = Self::defaults(py, optimizer)?;
        let Value::Object(mut table) = serde_json::from_str::<Value>(&defaults).expect("defaults are JSON")
        else {
            unreachable!("the defaults are an object")
        };
        let given: Map<String, Value> = serde_json::from_str(given)
            .map_err(|e| raise(py, "SettingsError", format!("options: expected a dict of settings: {e}")))?;
        for (key, value) in given {
            if !table.contains_key(&key) {
                let known: Vec<&str> = table.keys().map(String::as_str).collect();
                let message = format!(
                    "options: {optimizer} has no setting `{key}`; its settings are {}",
                    known.join(", ")
                );
                return Err(raise(py, "SettingsError", message));
            }
            table.insert(key, value);
        }
        let get = Getter { py, table: &table };
        let budget = get.seconds("time_budget")?;
        let augment = get.augment("augment")?;
        let precondition = if optimizer != "sgd" && get.boolean("precondition")? {
            Some(PreconditionerOptions { probes: get.count("probes")?, ..Default::default() })
        } else {
            None
        };
        let method = match optimizer {
            "newton" => Method::Newton(NewtonOptions {
                iter_max: get.count("iters")?,
                gn_size: get.optional_count("gn_size")?,
                xi: get.number("xi")?,
                cg_max: get.count("cg_max")?,
                lambda: get.number("lambda")?,
                drop: get.number("drop")?,
                boost: get.number("boost")?,
                eta: get.number("eta")?,
                cg_check_every: get.count("cg_check_every")?,
                grad_tol: get.optional_number("grad_tol")?,
                time_budget: budget,
                seed,
                precondition,
                augment,
                ..Default::default()
            }),
            "sgd" => Method::Sgd(SgdOptions {
                epochs: get.count("epochs")?,
                batch: get.count("batch")?,
                lr: get.number("lr")?,
                momentum: get.number("momentum")?,
                decay: get.number("decay")?,
                time_budget: budget,
                seed,
                evals_per_epoch: get.count("evals_per_epoch")?,
                augment,
            }),
            _ => Method::Sgn(SgnOptions {
                epochs: get.count("epochs")?,
                batch: get.count("batch")?,
                gn_size: get.optional_count("gn_size")?,
                cg_steps: get.count("cg_steps")?,
                xi: get.number("xi")?,
                lambda: get.number("lambda")?,
                drop: get.number("drop")?,
                boost: get.number("boost")?,
                cg_check_every: get.count("cg_check_every")?,
                time_budget: budget,
                seed,
                evals_per_epoch: get.count("evals_per_epoch")?,
                precondition,
                augment,
                // One process: the product is never summed across ranks.
                ..Default::default()
            }),
        };
        Ok(Self { method, bsize: get.count("bsize")?, seed })
    }
}

fn unknown_optimizer(py: Python<'_>, optimizer: &str) -> PyErr {
    raise(
        py,
        "SettingsError",
        format!("optimizer: expected \"newton\", \"sgn\" or \"sgd\", found {optimizer:?}"),
    )
}

/// Typed reads of the settings, each error naming the setting.
struct Getter<'a, 'py> {
    py: Python<'py>,
    table: &'a Map<String, Value>,
}

impl Getter<'_, '_> {
    fn wrong(&self, key: &str, expected: &str) -> PyErr {
        raise(
            self.py,
            "SettingsError",
            format!("options[{key:?}]: expected {expected}, found {}", self.table[key]),
        )
    }

    fn number(&self, key: &str) -> PyResult<f64> {
        self.table[key].as_f64().ok_or_else(|| self.wrong(key, "a number"))
    }

    fn optional_number(&self, key: &str) -> PyResult<Option<f64>> {
        if self.table[key].is_null() {
            Ok(None)
        } else {
            self.number(key).map(Some)
        }
    }

    fn count(&self, key: &str) -> PyResult<usize> {
        let value = self.table[key].as_u64().and_then(|v| usize::try_from(v).ok());
        value.ok_or_else(|| self.wrong(key, "a whole number ≥ 0"))
    }

    fn optional_count(&self, key: &str) -> PyResult<Option<usize>> {
        if self.table[key].is_null() {
            Ok(None)
        } else {
            self.count(key).map(Some)
        }
    }

    fn boolean(&self, key: &str) -> PyResult<bool> {
        self.table[key].as_bool().ok_or_else(|| self.wrong(key, "True or False"))
    }

    fn augment(&self, key: &str) -> PyResult<Augment> {
        let text = self.table[key]
            .as_str()
            .ok_or_else(|| self.wrong(key, "\"crop,flip\", \"crop\", \"flip\" or \"none\""))?;
        text.parse().map_err(|e: String| raise(self.py, "SettingsError", format!("options[{key:?}]: {e}")))
    }

    fn seconds(&self, key: &str) -> PyResult<Option<Duration>> {
        match self.optional_number(key)? {
            None => Ok(None),
            Some(s) => newton_wgpu::rules::seconds("time_budget", s)
                .map(Some)
                .map_err(|e| raise(self.py, "SettingsError", format!("options[\"time_budget\"]: {e}"))),
        }
    }
}
