//! `vargid identify --annotate OUT`: the photo with each face's box and its answer
//! (the best candidate and score when it matches, else "unknown"), written as PNG.
//! Boxes are in the upright image the server saw, so the photo is decoded the same
//! way (EXIF orientation applied).

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use plotters::prelude::*;
use vargid_proto::v1 as pb;

use crate::plot_font::{self, FONT};
use crate::ClientError;

fn upright(path: &Path) -> Result<RgbImage, ClientError> {
    let failed = |e: image::ImageError| ClientError::Input {
        path: path.into(),
        message: format!("decoding the photo: {e}"),
    };
    let bytes = std::fs::read(path).map_err(ClientError::io(path))?;
    let mut decoder = ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| ClientError::io(path)(e))?
        .into_decoder()
        .map_err(failed)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(failed)?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// The label of one face: who it is, or why not.
fn label(face: &pb::FaceIdentification) -> (String, RGBColor) {
    let rejected = face
        .face
        .as_ref()
        .is_some_and(|f| f.rejection != pb::FaceRejection::None as i32);
    match face.candidates.first() {
        _ if rejected => ("not searched".into(), RGBColor(160, 160, 160)),
        Some(c) if c.is_match => {
            let name = if c.display_name.is_empty() {
                &c.identity_id
            } else {
                &c.display_name
            };
            (format!("{name} {:.2}", c.score), RGBColor(0, 200, 0))
        }
        Some(c) => (format!("unknown ({:.2})", c.score), RGBColor(230, 40, 40)),
        None => ("unknown".into(), RGBColor(230, 40, 40)),
    }
}

/// Draws the answer's faces on the photo at `photo` and writes a PNG to `out`.
pub fn write(photo: &Path, answer: &pb::IdentifyResponse, out: &Path) -> Result<(), ClientError> {
    plot_font::register();
    let mut img = upright(photo)?;
    let (w, h) = img.dimensions();
    let drawn = |e: String| ClientError::Input {
        path: out.into(),
        message: format!("drawing: {e}"),
    };
    {
        let root = BitMapBackend::with_buffer(img.as_mut(), (w, h)).into_drawing_area();
        // Line and text sizes follow the photo, so a 4000-pixel photo stays legible.
        let stroke = (w.max(h) / 300).max(2);
        let size = f64::from((w.max(h) / 40).max(12));
        let boxes: Vec<_> = answer
            .faces
            .iter()
            .filter_map(|face| {
                let b = face.face.as_ref().and_then(|f| f.r#box)?;
                let (x0, y0) = (b.x.round() as i32, b.y.round() as i32);
                let (x1, y1) = (
                    (b.x + b.width).round() as i32,
                    (b.y + b.height).round() as i32,
                );
                Some(((x0, y0, x1, y1), label(face)))
            })
            .collect();
        for ((x0, y0, x1, y1), (_, color)) in &boxes {
            root.draw(&Rectangle::new(
                [(*x0, *y0), (*x1, *y1)],
                color.stroke_width(stroke),
            ))
            .map_err(|e| drawn(e.to_string()))?;
        }
        // Labels after every box, the first face's last, so it is never covered.
        for ((x0, y0, ..), (text, color)) in boxes.into_iter().rev() {
            let style = TextStyle::from((FONT, size).into_font()).color(&WHITE);
            let (tw, th) = root
                .estimate_text_size(&text, &style)
                .map_err(|e| drawn(e.to_string()))?;
            // Above the box, or inside its top when the box touches the top edge.
            let ty = if y0 >= th as i32 + 4 {
                y0 - th as i32 - 4
            } else {
                y0
            };
            root.draw(&Rectangle::new(
                [(x0, ty), (x0 + tw as i32 + 6, ty + th as i32 + 4)],
                color.filled(),
            ))
            .map_err(|e| drawn(e.to_string()))?;
            root.draw(&Text::new(text, (x0 + 3, ty + 2), style))
                .map_err(|e| drawn(e.to_string()))?;
        }
        root.present().map_err(|e| drawn(e.to_string()))?;
    }
    img.save_with_format(out, image::ImageFormat::Png)
        .map_err(|e| drawn(e.to_string()))
}
