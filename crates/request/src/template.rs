//! Templates a caller sends: the model they come from, and probe embeddings.

use tonic::Status;
use vargid_proto::v1 as pb;
use vargid_store::ModelTag;

/// Checks that `model` (field `field`, required) is the gallery's model: templates
/// of another model, or another version, are not comparable. FAILED_PRECONDITION
/// names both.
pub fn same_model(
    field: &str,
    model: Option<pb::ModelTag>,
    gallery: &str,
    stored: &ModelTag,
) -> Result<(), Status> {
    let model = model.ok_or_else(|| {
        Status::invalid_argument(format!(
            "{field}: required: the model the templates come from (GetServiceInfo, \
             ExportGalleryResponse.model)"
        ))
    })?;
    if model.name != stored.name
        || model.version != stored.version
        || model.embedding_size as usize != stored.embedding_size
    {
        return Err(Status::failed_precondition(format!(
            "{field}: templates of {} {} ({}-d) are not comparable with gallery {gallery:?} \
             of {} {} ({}-d)",
            model.name,
            model.version,
            model.embedding_size,
            stored.name,
            stored.version,
            stored.embedding_size
        )));
    }
    Ok(())
}

/// A probe template's embedding, L2-normalised: of the gallery's model and width,
/// finite, not all zero.
pub fn probe_template(
    field: &str,
    template: pb::ProbeTemplate,
    gallery: &str,
    stored: &ModelTag,
) -> Result<Vec<f32>, Status> {
    same_model(&format!("{field}.model"), template.model, gallery, stored)?;
    let v = template.embedding;
    if v.len() != stored.embedding_size {
        return Err(Status::invalid_argument(format!(
            "{field}.embedding: {} values, the model's embeddings have {}",
            v.len(),
            stored.embedding_size
        )));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Status::invalid_argument(format!(
            "{field}.embedding[{i}]: not a finite number"
        )));
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !(norm > 1e-6 && norm.is_finite()) {
        return Err(Status::invalid_argument(format!(
            "{field}.embedding: all zero (or too small to normalise)"
        )));
    }
    Ok(v.into_iter().map(|x| x / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn model() -> ModelTag {
        ModelTag {
            name: "m".into(),
            version: "1".into(),
            embedding_size: 3,
        }
    }

    fn probe(version: &str, embedding: Vec<f32>) -> pb::ProbeTemplate {
        pb::ProbeTemplate {
            model: Some(pb::ModelTag {
                name: "m".into(),
                version: version.into(),
                embedding_size: 3,
            }),
            embedding,
        }
    }

    #[test]
    fn normalises_and_names_each_fault() {
        let ok = probe_template("t", probe("1", vec![3.0, 0.0, 4.0]), "g", &model()).unwrap();
        assert_eq!(ok, vec![0.6, 0.0, 0.8]);
        let err = |p| probe_template("t", p, "g", &model()).unwrap_err();
        let e = err(probe("2", vec![1.0; 3]));
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(
            e.message().starts_with("t.model: templates of m 2"),
            "{}",
            e.message()
        );
        let e = err(pb::ProbeTemplate {
            model: None,
            embedding: vec![1.0; 3],
        });
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("t.model: required"));
        assert!(err(probe("1", vec![1.0; 4]))
            .message()
            .starts_with("t.embedding: 4 values"));
        assert!(err(probe("1", vec![1.0, f32::NAN, 0.0]))
            .message()
            .starts_with("t.embedding[1]"));
        assert!(err(probe("1", vec![0.0; 3])).message().contains("all zero"));
    }
}
