//! YAML inventory import and export.
