//! Contact sheets: every style of a model, or several style pictures, on one photo, in a
//! labelled grid.

use image::{imageops, DynamicImage, Rgb, RgbImage};
use models::{pixels, Precision};
use tch::{Device, Tensor};

use crate::error::{Error, Result};
use crate::style_source::{ArbitraryNetworks, StyleSource};
use crate::stylizer::{Finish, StyleMix, Stylizer};

const BACKGROUND: Rgb<u8> = Rgb([24, 24, 28]);
const INK: Rgb<u8> = Rgb([235, 235, 235]);
const MARGIN: u32 = 8;
/// Label glyphs are 5x7 pixels drawn at this scale.
const GLYPH_SCALE: u32 = 2;

/// Runs `photo` (`[3, H, W]`, RGB in [0, 255]) through each style of the stylizer's model in
/// turn; the stylizer is left on the last style.
pub fn stylize_every_style(stylizer: &mut Stylizer, photo: &Tensor) -> Result<Vec<RgbImage>> {
    let styles = stylizer.model().meta.styles.clone();
    let batch = photo.unsqueeze(0);
    (0..styles.len())
        .map(|index| {
            stylizer.set_mix(StyleMix::single(index, &styles))?;
            let stylized = stylizer.stylize(&batch)?;
            Ok(pixels::tensor_to_image(&stylized.squeeze_dim(0))?)
        })
        .collect()
}

/// The styled cells of a sheet of `photo` (`[3, H, W]`, RGB in [0, 255]), each with its label:
/// every style of a model (labelled by its name), or each style picture on its own (labelled by
/// its file stem; the predictor runs once per picture, all of them before any cell). Weights
/// are refused for pictures: a sheet compares them, `stylize` mixes them.
pub fn style_cells(
    source: &StyleSource,
    device: Device,
    precision: Precision,
    photo: &Tensor,
) -> Result<Vec<(String, RgbImage)>> {
    match source {
        StyleSource::Model { .. } => {
            let mut stylizer = source.stylizer(device, precision, Finish::default())?;
            let stylized = stylize_every_style(&mut stylizer, photo)?;
            let styles = stylizer.model().meta.styles.clone();
            Ok(styles.into_iter().zip(stylized).collect())
        }
        StyleSource::Pictures(pictures) => {
            if let Some(weighted) = pictures.iter().find(|p| p.weight != 1.0) {
                return Err(Error::Style(format!(
                    "a sheet shows each style picture on its own; drop the weight of `{}` \
                     (weights mix pictures in `atelier stylize`)",
                    weighted.path.display()
                )));
            }
            let networks = ArbitraryNetworks::load(device)?;
            let vectors = pictures
                .iter()
                .map(|p| networks.style_vector(&p.path))
                .collect::<Result<Vec<_>>>()?;
            let mut stylizer = Stylizer::with_style_vector(
                networks.transformer,
                networks.predictor,
                device,
                precision,
                &vectors[0],
                &pictures[0].label(),
                Finish::default(),
            )?;
            let batch = photo.unsqueeze(0);
            pictures
                .iter()
                .zip(&vectors)
                .map(|(picture, vector)| {
                    let label = picture.label();
                    stylizer.set_style_vector(vector, &label)?;
                    let stylized = stylizer.stylize(&batch)?;
                    Ok((label, pixels::tensor_to_image(&stylized.squeeze_dim(0))?))
                })
                .collect()
        }
    }
}

/// Lays out `(label, picture)` cells, all of one size, in a grid with `columns` columns (square
/// when `None`), each labelled underneath.
pub fn layout(cells: &[(String, RgbImage)], columns: Option<usize>) -> RgbImage {
    let columns = columns
        .unwrap_or_else(|| (cells.len() as f64).sqrt().ceil() as usize)
        .clamp(1, cells.len().max(1));
    let rows = cells.len().div_ceil(columns);
    let (cell_w, cell_h) = cells
        .iter()
        .map(|(_, c)| c.dimensions())
        .fold((1, 1), |(w, h), (cw, ch)| (w.max(cw), h.max(ch)));
    let label_h = 7 * GLYPH_SCALE + MARGIN;
    let pitch_x = cell_w + MARGIN;
    let pitch_y = cell_h + label_h + MARGIN;
    let mut sheet = RgbImage::from_pixel(
        MARGIN + columns as u32 * pitch_x,
        MARGIN + rows as u32 * pitch_y,
        BACKGROUND,
    );
    for (index, (label, cell)) in cells.iter().enumerate() {
        let x = MARGIN + (index % columns) as u32 * pitch_x;
        let y = MARGIN + (index / columns) as u32 * pitch_y;
        imageops::replace(&mut sheet, cell, x as i64, y as i64);
        draw_text(&mut sheet, label, x, y + cell_h + MARGIN / 2);
    }
    sheet
}

/// The original photo as the sheet's first cell.
pub fn original_cell(photo: &DynamicImage) -> RgbImage {
    photo.to_rgb8()
}

fn draw_text(image: &mut RgbImage, text: &str, x: u32, y: u32) {
    for (position, ch) in text.chars().enumerate() {
        let glyph = glyph(ch);
        let left = x + position as u32 * 6 * GLYPH_SCALE;
        for (row, bits) in glyph.iter().enumerate() {
            for column in 0..5u32 {
                if bits & (0x10 >> column) == 0 {
                    continue;
                }
                for dy in 0..GLYPH_SCALE {
                    for dx in 0..GLYPH_SCALE {
                        let (px, py) = (
                            left + column * GLYPH_SCALE + dx,
                            y + row as u32 * GLYPH_SCALE + dy,
                        );
                        if px < image.width() && py < image.height() {
                            image.put_pixel(px, py, INK);
                        }
                    }
                }
            }
        }
    }
}

/// A 5x7 bitmap font (rows top to bottom, bit 4 = leftmost column): digits, letters (shown in
/// upper case) and a few punctuation marks; anything else draws as `?`.
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0; 7],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_places_every_cell_and_draws_its_label() {
        let red = RgbImage::from_pixel(20, 10, Rgb([255, 0, 0]));
        let cells: Vec<(String, RgbImage)> = (0..5).map(|i| (i.to_string(), red.clone())).collect();
        let sheet = layout(&cells, None);
        // 5 cells: 3 columns, 2 rows.
        let label_h = 7 * GLYPH_SCALE + MARGIN;
        assert_eq!(sheet.width(), MARGIN + 3 * (20 + MARGIN));
        assert_eq!(sheet.height(), MARGIN + 2 * (10 + label_h + MARGIN));
        let red_pixels = sheet.pixels().filter(|p| **p == Rgb([255, 0, 0])).count();
        assert_eq!(red_pixels, 5 * 20 * 10);
        let ink = sheet.pixels().filter(|p| **p == INK).count();
        assert!(
            ink > 5 * 4 * GLYPH_SCALE as usize * GLYPH_SCALE as usize,
            "labels are drawn"
        );
    }

    #[test]
    fn every_digit_has_its_own_glyph() {
        let digits: Vec<[u8; 7]> = ('0'..='9').map(glyph).collect();
        for (i, a) in digits.iter().enumerate() {
            for b in &digits[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(glyph('a'), glyph('?'));
        assert_eq!(glyph('a'), glyph('A'));
    }
}
