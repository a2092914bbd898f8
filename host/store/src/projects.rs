//! Projects: every applied version of a project file, and the head that names the latest.

use super::*;

impl Store {
    /// Stores `text` as the project's next version, unless it and `base_dir` equal the
    /// latest version's.
    pub fn apply_project(
        &self,
        name: &str,
        text: &str,
        base_dir: &Path,
    ) -> Result<AppliedVersion, StoreError> {
        check_name("project name", name)?;
        let now = now_millis();
        (&self.projects, &self.project_heads)
            .transaction(|(projects, heads)| {
                let head: Option<ProjectHead> = match heads.get(name.as_bytes())? {
                    Some(b) => Some(abort(decode(|| format!("project_heads/{name}"), &b))?),
                    None => None,
                };
                let (first, version) = match head {
                    None => (1, 1),
                    Some(h) => {
                        if !h.deleted {
                            let key = || format!("projects/{name}@{}", h.latest_version);
                            let Some(b) = projects.get(project_key(name, h.latest_version))? else {
                                return abort(Err(StoreError::Corrupt {
                                    key: key(),
                                    reason: "the latest version is missing".to_string(),
                                }));
                            };
                            let latest: ProjectAtRest = abort(decode(key, &b))?;
                            if latest.text == text && latest.base_dir == base_dir {
                                return Ok(AppliedVersion {
                                    version: h.latest_version,
                                    created: false,
                                });
                            }
                        }
                        let Some(next) = h.latest_version.checked_add(1) else {
                            return abort(Err(StoreError::Invalid {
                                what: "project version",
                                reason: format!("project {name:?} has run out of versions"),
                            }));
                        };
                        (if h.deleted { next } else { h.first_version }, next)
                    }
                };
                let project = ProjectAtRest {
                    name: name.to_string(),
                    version,
                    text: text.to_string(),
                    base_dir: base_dir.to_path_buf(),
                    created_at: now,
                };
                projects.insert(project_key(name, version), abort(encode(&project))?)?;
                let head = ProjectHead {
                    first_version: first,
                    latest_version: version,
                    updated_at: now,
                    deleted: false,
                };
                heads.insert(name.as_bytes(), abort(encode(&head))?)?;
                Ok(AppliedVersion {
                    version,
                    created: true,
                })
            })
            .map_err(tx_err)
    }

    pub(super) fn project_head(&self, name: &str) -> Result<Option<ProjectHead>, StoreError> {
        match self.project_heads.get(name.as_bytes()).map_err(db_err)? {
            None => Ok(None),
            Some(b) => {
                let h: ProjectHead = decode(|| format!("project_heads/{name}"), &b)?;
                Ok((!h.deleted).then_some(h))
            }
        }
    }

    /// One version of a project (`None` = the latest).
    pub fn project(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredProject>, StoreError> {
        let Some(head) = self.project_head(name)? else {
            return Ok(None);
        };
        let version = version.unwrap_or(head.latest_version);
        if version < head.first_version || version > head.latest_version {
            return Ok(None);
        }
        let Some(b) = self
            .projects
            .get(project_key(name, version))
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let p: ProjectAtRest = decode(|| format!("projects/{name}@{version}"), &b)?;
        Ok(Some(StoredProject {
            name: p.name,
            version: p.version,
            text: p.text,
            base_dir: p.base_dir,
            created_at: p.created_at,
        }))
    }

    /// Every project, sorted by name (reads no project text).
    pub fn projects(&self) -> Result<Vec<ProjectSummary>, StoreError> {
        let mut out = Vec::new();
        for kv in self.project_heads.iter() {
            let (k, v) = kv.map_err(db_err)?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let h: ProjectHead = decode(|| format!("project_heads/{name}"), &v)?;
            if !h.deleted {
                out.push(ProjectSummary {
                    name,
                    latest_version: h.latest_version,
                    updated_at: h.updated_at,
                });
            }
        }
        Ok(out)
    }

    /// Removes every version of a project and its schedule state (its executions stay).
    /// False if there was none.
    pub fn delete_project(&self, name: &str) -> Result<bool, StoreError> {
        let now = now_millis();
        self.project_state.remove(name.as_bytes()).map_err(db_err)?;
        // A project applied again under this name starts without a baseline.
        self.project_schemas
            .remove(name.as_bytes())
            .map_err(db_err)?;
        (&self.projects, &self.project_heads)
            .transaction(|(projects, heads)| {
                let Some(b) = heads.get(name.as_bytes())? else {
                    return Ok(false);
                };
                let mut h: ProjectHead = abort(decode(|| format!("project_heads/{name}"), &b))?;
                if h.deleted {
                    return Ok(false);
                }
                for version in h.first_version..=h.latest_version {
                    projects.remove(project_key(name, version))?;
                }
                h.deleted = true;
                h.updated_at = now;
                heads.insert(name.as_bytes(), abort(encode(&h))?)?;
                Ok(true)
            })
            .map_err(tx_err)
    }
}
