//! The styles a server offers: the built-in 26-style network and every model file of
//! `--models DIR`, each style with a stable id, and the parsing of a request's `style`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// Where a style comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StyleKind {
    /// One of the built-in network's styles.
    Builtin,
    /// A style of a model file from `--models`.
    Model,
}

/// One loaded network, as listings name it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// `multistyle26` for the built-in network, else the file's stem.
    pub name: String,
    pub styles: Vec<String>,
}

/// One style a request can ask for.
#[derive(Debug, Clone, Serialize)]
pub struct StyleEntry {
    /// What `style=` takes: the index for built-in styles (`19`), the file's stem for a
    /// one-style model file (`candy`), `stem/style` for a style of a multi-style file.
    pub id: String,
    pub kind: StyleKind,
    pub name: String,
    /// The network it belongs to (`multistyle26` or the file's stem).
    pub model: String,
    #[serde(skip)]
    pub model_index: usize,
    #[serde(skip)]
    pub style_index: usize,
}

/// A request's style resolved against the loaded networks: one model and one weight per style
/// of it (summing to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub model: usize,
    pub weights: Vec<f64>,
    /// The style's id, or the ids of a mix joined with `+`.
    pub label: String,
}

/// Every style the server offers, in listing order: built-in first, then model files by name.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub models: Vec<ModelInfo>,
    pub entries: Vec<StyleEntry>,
    /// The entry used when a request names no style.
    pub default_entry: usize,
}

/// The model files of `dir`: its `*.safetensors` files (not folders below it) by name, without
/// the training checkpoints (`*.checkpoint.safetensors`) that `atelier train` writes beside them.
pub fn model_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|source| Error::ModelDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in read {
        let entry = entry.map_err(|source| Error::ModelDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_file()
            && name.ends_with(".safetensors")
            && !name.ends_with(".checkpoint.safetensors")
            && !name.starts_with('.')
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

impl Catalogue {
    /// Builds the listing for `models`, the first of which is the built-in network
    /// (`builtin_default` is its default style).
    pub fn new(models: Vec<ModelInfo>, builtin_default: usize) -> Self {
        let mut entries: Vec<StyleEntry> = Vec::new();
        for (model_index, model) in models.iter().enumerate() {
            let kind = if model_index == 0 {
                StyleKind::Builtin
            } else {
                StyleKind::Model
            };
            for (style_index, style) in model.styles.iter().enumerate() {
                let id = match kind {
                    StyleKind::Builtin => style_index.to_string(),
                    StyleKind::Model if model.styles.len() == 1 => model.name.clone(),
                    StyleKind::Model => format!("{}/{style}", model.name),
                };
                // Ids stay unique: a file named like a built-in index gets its long form.
                let id = if entries.iter().any(|e| e.id == id) {
                    format!("{}/{style}", model.name)
                } else {
                    id
                };
                entries.push(StyleEntry {
                    id,
                    kind,
                    name: style.clone(),
                    model: model.name.clone(),
                    model_index,
                    style_index,
                });
            }
        }
        let default_entry = entries
            .iter()
            .position(|e| e.model_index == 0 && e.style_index == builtin_default)
            .unwrap_or(0);
        Self {
            models,
            entries,
            default_entry,
        }
    }

    pub fn entry(&self, id: &str) -> Option<&StyleEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Resolves `style=`: an id, or a mix `ID:W,ID:W` of styles of one network (weights are
    /// normalised to sum to 1). `None` is the default style.
    pub fn select(&self, style: Option<&str>) -> Result<Selection> {
        let style = style.map(str::trim).filter(|s| !s.is_empty());
        let Some(style) = style else {
            return Ok(self.single(&self.entries[self.default_entry]));
        };
        if let Some(entry) = self.entry(style) {
            return Ok(self.single(entry));
        }
        let mut parts: Vec<(&StyleEntry, f64)> = Vec::new();
        for part in style.split(',').map(str::trim) {
            let (entry, weight) = match (self.entry(part), part.rsplit_once(':')) {
                (Some(entry), _) => (entry, 1.0),
                (None, Some((id, weight))) => {
                    let weight: f64 = weight.trim().parse().map_err(|_| {
                        Error::BadRequest(format!("`{weight}` is not a weight in `{part}`"))
                    })?;
                    (self.known(id.trim())?, weight)
                }
                (None, None) => (self.known(part)?, 1.0),
            };
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(Error::BadRequest(format!(
                    "the weight of `{}` must be a number >= 0",
                    entry.id
                )));
            }
            parts.push((entry, weight));
        }
        let model = parts[0].0.model_index;
        if parts.iter().any(|(e, _)| e.model_index != model) {
            return Err(Error::BadRequest(
                "a style mix must take all its styles from one network".into(),
            ));
        }
        let mut weights = vec![0.0; self.models[model].styles.len()];
        for (entry, weight) in &parts {
            weights[entry.style_index] += weight;
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err(Error::BadRequest(format!(
                "the weights of `{style}` sum to 0"
            )));
        }
        let mut label = Vec::new();
        for (entry, _) in &parts {
            if !label.contains(&entry.id.as_str()) {
                label.push(entry.id.as_str());
            }
        }
        Ok(Selection {
            model,
            weights: weights.iter().map(|w| w / total).collect(),
            label: label.join("+"),
        })
    }

    fn known(&self, id: &str) -> Result<&StyleEntry> {
        self.entry(id).ok_or_else(|| {
            Error::BadRequest(format!(
                "no style `{id}` (GET /v1/styles lists the {} styles)",
                self.entries.len()
            ))
        })
    }

    fn single(&self, entry: &StyleEntry) -> Selection {
        let mut weights = vec![0.0; self.models[entry.model_index].styles.len()];
        weights[entry.style_index] = 1.0;
        Selection {
            model: entry.model_index,
            weights,
            label: entry.id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Catalogue {
        let builtin = ModelInfo {
            name: "multistyle26".into(),
            styles: (0..4).map(|i| i.to_string()).collect(),
        };
        let candy = ModelInfo {
            name: "candy".into(),
            styles: vec!["candy".into()],
        };
        let pair = ModelInfo {
            name: "pair".into(),
            styles: vec!["a".into(), "b".into()],
        };
        Catalogue::new(vec![builtin, candy, pair], 2)
    }

    #[test]
    fn ids_name_builtin_indices_files_and_their_styles() {
        let catalogue = catalogue();
        let ids: Vec<&str> = catalogue.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["0", "1", "2", "3", "candy", "pair/a", "pair/b"]);
        assert_eq!(catalogue.entries[catalogue.default_entry].id, "2");
        assert_eq!(catalogue.entries[4].kind, StyleKind::Model);
    }

    #[test]
    fn selections_resolve_ids_and_mixes_of_one_network() {
        let catalogue = catalogue();
        let default = catalogue.select(None).unwrap();
        assert_eq!(
            (default.model, default.weights.clone()),
            (0, vec![0.0, 0.0, 1.0, 0.0])
        );
        let mix = catalogue.select(Some("1:1, 3:3")).unwrap();
        assert_eq!(mix.weights, vec![0.0, 0.25, 0.0, 0.75]);
        assert_eq!(mix.label, "1+3");
        let file = catalogue.select(Some("pair/b")).unwrap();
        assert_eq!((file.model, file.weights), (2, vec![0.0, 1.0]));
        for bad in ["9", "1:x", "1:-1", "1:0", "0,candy", "../etc/passwd"] {
            let err = catalogue.select(Some(bad)).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{bad}: {err}");
        }
    }
}
