//! Request images: encoded bytes or raw RGB pixels, and where their faces are.

use tonic::Status;
use vargid_proto::v1 as pb;

/// Pixels of one image as sent by a caller.
#[derive(Debug, Clone)]
pub enum ImageSource {
    Encoded(Vec<u8>),
    Raw {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    },
}

/// How to find the faces in an image (see `FaceLocation` in the proto).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Location {
    Auto,
    Aligned,
    Detect,
    Landmarks(vargid_model::Landmarks),
}

#[derive(Debug, Clone)]
pub struct ImageInput {
    pub source: ImageSource,
    pub location: Location,
}

/// A request image; `field` names it in error messages.
pub fn image(field: &str, image: Option<pb::Image>) -> Result<ImageInput, Status> {
    let image = image.ok_or_else(|| Status::invalid_argument(format!("{field}: required")))?;
    let location = match pb::FaceLocation::try_from(image.location) {
        Ok(pb::FaceLocation::Auto) => Location::Auto,
        Ok(pb::FaceLocation::Aligned) => Location::Aligned,
        Ok(pb::FaceLocation::Detect) => Location::Detect,
        Ok(pb::FaceLocation::Landmarks) => Location::Landmarks(landmarks(
            &format!("{field}.landmarks"),
            image.landmarks.as_ref(),
        )?),
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "{field}.location: unknown value {}",
                image.location
            )))
        }
    };
    let source = match image.source {
        Some(pb::image::Source::Encoded(bytes)) => ImageSource::Encoded(bytes),
        Some(pb::image::Source::Raw(raw)) => ImageSource::Raw {
            width: raw.width,
            height: raw.height,
            rgb: raw.rgb,
        },
        None => {
            return Err(Status::invalid_argument(format!(
                "{field}: set either `encoded` (JPEG, PNG, WebP bytes) or `raw` (RGB pixels)"
            )))
        }
    };
    Ok(ImageInput { source, location })
}

/// The five landmarks of FACE_LOCATION_LANDMARKS: finite pixel coordinates.
fn landmarks(
    field: &str,
    given: Option<&pb::Landmarks>,
) -> Result<vargid_model::Landmarks, Status> {
    let points = given.map(|l| l.points.as_slice()).unwrap_or_default();
    if points.len() != 5 {
        return Err(Status::invalid_argument(format!(
            "{field}: FACE_LOCATION_LANDMARKS needs exactly 5 points (right eye, left eye, \
             nose tip, right and left mouth corner), got {}",
            points.len()
        )));
    }
    let mut out = [[0.0f32; 2]; 5];
    for (i, (p, o)) in points.iter().zip(&mut out).enumerate() {
        if !(p.x.is_finite() && p.y.is_finite()) {
            return Err(Status::invalid_argument(format!(
                "{field}.points[{i}]: coordinates must be finite numbers"
            )));
        }
        *o = [p.x, p.y];
    }
    Ok(out)
}

/// Repeated request images, between 1 and `max`.
pub fn images(field: &str, images: Vec<pb::Image>, max: usize) -> Result<Vec<ImageInput>, Status> {
    if images.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field}: at least one image is required"
        )));
    }
    if images.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field}: {} images, at most {max} per request",
            images.len()
        )));
    }
    images
        .into_iter()
        .enumerate()
        .map(|(i, img)| image(&format!("{field}[{i}]"), Some(img)))
        .collect()
}
