// ResultSet rows → the typed records of types.ts. Column names are XNAT's (xnat-api.md §2).
import { relativePathFromUri, scanIdFromUri } from './paths.js';
import { numOrNull, str, type Row } from './resultset.js';
import type { Assessor, Experiment, FileEntry, Project, Resource, Scan, ScopedResource, Subject } from './types.js';

export function toProject(r: Row): Project {
  return {
    id: str(r, 'ID'),
    name: str(r, 'name'),
    secondaryId: str(r, 'secondary_ID'),
    description: str(r, 'description'),
  };
}

export function toSubject(r: Row): Subject {
  return {
    id: str(r, 'ID'),
    label: str(r, 'label'),
    project: str(r, 'project'),
    insertDate: str(r, 'insert_date'),
  };
}

export function toExperiment(r: Row): Experiment {
  return {
    id: str(r, 'ID'),
    label: str(r, 'label'),
    project: str(r, 'project'),
    xsiType: str(r, 'xsiType'),
    date: str(r, 'date'),
    insertDate: str(r, 'insert_date'),
    subjectId: str(r, 'subject_ID'),
  };
}

export function toScan(r: Row): Scan {
  return {
    id: str(r, 'ID'),
    type: str(r, 'type'),
    seriesDescription: str(r, 'series_description'),
    xsiType: str(r, 'xsiType'),
    quality: str(r, 'quality'),
  };
}

export function toAssessor(r: Row): Assessor {
  return { id: str(r, 'ID'), label: str(r, 'label'), xsiType: str(r, 'xsiType') };
}

export function toResource(r: Row): Resource {
  return {
    id: str(r, 'xnat_abstractresource_id'),
    label: str(r, 'label'),
    format: str(r, 'format'),
    content: str(r, 'content'),
    fileCount: numOrNull(r, 'file_count'),
    fileSize: numOrNull(r, 'file_size'),
  };
}

export function toScopedResource(r: Row): ScopedResource {
  return { ...toResource(r), category: str(r, 'category'), catId: str(r, 'cat_id') };
}

export function toFileEntry(r: Row): FileEntry {
  const uri = str(r, 'URI');
  return {
    // Name is only the base name; the sub-folder path is only in the URI.
    path: relativePathFromUri(uri) ?? str(r, 'Name'),
    size: numOrNull(r, 'Size') ?? 0,
    digest: str(r, 'digest'),
    uri,
    resourceLabel: str(r, 'collection'),
    resourceId: str(r, 'cat_ID'),
  };
}

export function toScanFileEntry(r: Row): FileEntry & { scan: string } {
  const f = toFileEntry(r);
  return { ...f, scan: scanIdFromUri(f.uri) ?? '' };
}
