//! ImportGallery's identities and templates.

use tonic::Status;
use vargid_proto::v1 as pb;
use vargid_store::{IdentityRow, ImportedIdentity};

use crate::fields::identity_id;

/// Imported identities, checked: valid ids, templates of `dim` finite values, at most
/// `max_templates` in all.
pub fn imported_identities(
    identities: Vec<pb::ExportedIdentity>,
    dim: usize,
    max_templates: usize,
) -> Result<Vec<ImportedIdentity>, Status> {
    let total: usize = identities.iter().map(|i| i.templates.len()).sum();
    if total > max_templates {
        return Err(Status::invalid_argument(format!(
            "identities: {total} templates, at most {max_templates} per request"
        )));
    }
    identities
        .into_iter()
        .enumerate()
        .map(|(i, exported)| {
            let field = format!("identities[{i}]");
            let identity = exported
                .identity
                .ok_or_else(|| Status::invalid_argument(format!("{field}.identity: required")))?;
            identity_id(
                &format!("{field}.identity.identity_id"),
                &identity.identity_id,
            )?;
            let templates = exported
                .templates
                .into_iter()
                .enumerate()
                .map(|(j, t)| {
                    if t.embedding.len() != dim || !t.embedding.iter().all(|x| x.is_finite()) {
                        return Err(Status::invalid_argument(format!(
                            "{field}.templates[{j}]: need {dim} finite values, got {}",
                            t.embedding.len()
                        )));
                    }
                    Ok(t.embedding)
                })
                .collect::<Result<Vec<_>, Status>>()?;
            Ok((
                IdentityRow {
                    identity_id: identity.identity_id,
                    display_name: identity.display_name,
                    metadata: identity.metadata.into_iter().collect(),
                    created_at_unix_ms: identity.created_at_unix_ms,
                },
                templates,
            ))
        })
        .collect()
}
