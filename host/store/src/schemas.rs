//! The `project_schemas` tree: per project, the schema baseline the drift check
//! compares a run's discovered schemas with.

use super::*;

impl Store {
    /// The schemas recorded for `project` (none before its first validated run).
    pub fn schema_baseline(&self, project: &str) -> Result<Option<StoredSchemas>, StoreError> {
        check_name("project name", project)?;
        match self
            .project_schemas
            .get(project.as_bytes())
            .map_err(db_err)?
        {
            None => Ok(None),
            Some(b) => decode(|| format!("project_schemas/{project}"), &b).map(Some),
        }
    }

    /// Records `schemas` as `project`'s baseline (replacing the one before).
    pub fn set_schema_baseline(
        &self,
        project: &str,
        schemas: &StoredSchemas,
    ) -> Result<(), StoreError> {
        check_name("project name", project)?;
        self.project_schemas
            .insert(project.as_bytes(), encode(schemas)?)
            .map_err(db_err)?;
        Ok(())
    }
}
