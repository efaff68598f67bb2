"""Incremental face clustering (Immich-style), pure functions over embeddings: no database, no model.

Distances are euclidean between L2-normalised dlib ResNet descriptors. dlib's own "same person" threshold
of 0.6 is for its raw descriptors, whose norm is ~1.45 here, i.e. ~0.41 after normalisation.

Measured on real faces (dlib HOG + 5-point alignment, `ingest.analyzers.faces`, normalised descriptors):
- dlib's `johns` set, 11 photos of John Salley + 11 of John Savage (150x150 web crops):
  same person 0.06-0.27 (mean 0.19 / 0.21, p95 0.25), the two men 0.65-0.76 (mean 0.71).
- 54 faces in 15 unrelated photos (VOC group photos, insightface t1, Grace Hopper, astronaut, ...); the 29
  with quality >= 0.3 are all different people (406 pairs): min 0.36, p1 0.41, p5 0.46, mean 0.56. Among
  faces with quality >= 0.5 the closest pairs are 0.39 (two women hugging, same photo) and 0.41-0.43 across
  photos.
Clustering both sets together (76 faces) with `cluster_faces`:
- 0.25-0.35: the Johns form exactly 2 clusters (11 + 11, none left out) and no cluster mixes identities.
- 0.36: the astronaut joins a 52 px face from a bar photo (pair at 0.3595); 0.40: 3 mixed clusters;
  0.45: 9; 0.50: John Savage's cluster chains in 14 strangers; 0.65: the two Johns merge.
The Johns alone stay 2 clean clusters up to 0.60. Default 0.33: 0.06 above the widest same-person pair,
0.03 below the closest stranger; false merges cost the user more than split clusters (merge is one click).
0.5 (ArcFace/Immich-like) chains different people together with dlib descriptors.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_DISTANCE = 0.33
_BLOCK = 2048  # rows per block of the pairwise-distance computation (memory stays O(block x n))


@dataclass
class FaceRef:
    """What clustering needs of a face row: its vector, quality and current person."""

    face_id: int
    media_id: int
    embedding: np.ndarray
    quality: float
    person_id: int | None
    locked: bool = False  # its person was named by the user: never moved, even by a full re-cluster


def cluster_faces(faces: list[FaceRef], max_distance: float = DEFAULT_MAX_DISTANCE, min_faces: int = 2,
                  min_quality: float = 0.3, recluster: bool = False) -> dict[int, int | None]:
    """face_id -> existing person_id, a negative temporary id for a new person, or None (unassigned).

    1. Faces that have a person keep it (with `recluster`, only faces of locked persons keep theirs).
    2. An unassigned face joins the nearest person whose centroid is closer than `max_distance`.
    3. The rest form new persons by density: a face with quality >= `min_quality` and at least `min_faces`
       such faces (itself included) within `max_distance` is a core; clusters grow from cores; low-quality
       faces join as members but never seed or extend one. Clusters left smaller than `min_faces` dissolve.
    No person ever gets two faces of the same media_id (two faces in one photo are two people).
    With `recluster`, a new cluster reuses the old unlocked person_id most of its faces had, so ids
    (and anything hanging off them) stay stable.
    """
    if not faces:
        return {}
    vectors = _normalised(np.stack([np.asarray(f.embedding, dtype=np.float32).ravel() for f in faces]))
    labels: dict[int, int | None] = {}
    keeps = [f.person_id is not None and (f.locked or not recluster) for f in faces]
    for face, keep in zip(faces, keeps):
        labels[face.face_id] = face.person_id if keep else None
    pending = [i for i, keep in enumerate(keeps) if not keep]
    _join_existing(faces, vectors, pending, keeps, labels, max_distance, min_quality)
    pending = [i for i in pending if labels[faces[i].face_id] is None]
    clusters = _density_clusters(faces, vectors, pending, max_distance, min_faces, min_quality)
    used = {label for label in labels.values() if label is not None}
    for number, members in enumerate(clusters, start=1):
        label = _reused_person(faces, members, used) if recluster else None
        label = label if label is not None else -number
        used.add(label)
        for i in members:
            labels[faces[i].face_id] = label
    return labels


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of unit vectors: sqrt(2 - 2 cos)."""
    return np.sqrt(np.clip(2.0 - 2.0 * (a @ b.T), 0.0, None))


def _join_existing(faces: list[FaceRef], vectors: np.ndarray, pending: list[int], keeps: list[bool],
                   labels: dict[int, int | None], max_distance: float, min_quality: float) -> None:
    """Greedy, closest pair first: each pending face joins at most one person, never a person already
    holding a face of the same photo. Centroids are fixed for the pass, so the result is order-free."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, keep in enumerate(keeps):
        if keep:
            members[faces[i].person_id].append(i)  # type: ignore[index]
    if not members or not pending:
        return
    persons = sorted(members)
    centroids = np.stack([_centroid(faces, vectors, members[p], min_quality) for p in persons])
    media = {p: {faces[i].media_id for i in members[p]} for p in persons}
    dist = _distances(vectors[pending], centroids)
    rows, cols = np.nonzero(dist < max_distance)
    for k in np.argsort(dist[rows, cols], kind="stable"):
        i, person = pending[rows[k]], persons[cols[k]]
        face = faces[i]
        if labels[face.face_id] is None and face.media_id not in media[person]:
            labels[face.face_id] = person
            media[person].add(face.media_id)


def _centroid(faces: list[FaceRef], vectors: np.ndarray, idx: list[int], min_quality: float) -> np.ndarray:
    """Mean direction of a person's good faces (all faces if none is good)."""
    good = [i for i in idx if faces[i].quality >= min_quality] or idx
    mean = vectors[good].mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def _neighbours(vectors: np.ndarray, idx: list[int], max_distance: float) -> list[list[tuple[float, int]]]:
    """For each face in idx: (distance, position in idx) of the others within max_distance, nearest first."""
    sub = vectors[idx]
    found: list[list[tuple[float, int]]] = []
    for start in range(0, len(idx), _BLOCK):
        block = _distances(sub[start:start + _BLOCK], sub)
        for r, row in enumerate(block):
            near = np.nonzero(row < max_distance)[0]
            found.append(sorted((float(row[j]), int(j)) for j in near if j != start + r))
    return found


def _density_clusters(faces: list[FaceRef], vectors: np.ndarray, pending: list[int], max_distance: float,
                      min_faces: int, min_quality: float) -> list[list[int]]:
    """DBSCAN over the pending faces (indices into `faces`), with the quality and same-photo rules."""
    if not pending:
        return []
    near = _neighbours(vectors, pending, max_distance)
    good = [faces[i].quality >= min_quality for i in pending]
    good_count = [1 + sum(good[j] for _, j in near[p]) for p in range(len(pending))]
    core = [good[p] and good_count[p] >= min_faces for p in range(len(pending))]
    assigned = [False] * len(pending)
    clusters: list[list[int]] = []
    # densest seeds first, so a cluster starts in its middle rather than at a fringe face
    for seed in sorted(range(len(pending)), key=lambda p: (-good_count[p], faces[pending[p]].face_id)):
        if not core[seed] or assigned[seed]:
            continue
        cluster = _grow(seed, near, core, assigned, [faces[i].media_id for i in pending])
        if len(cluster) >= min_faces:
            clusters.append(sorted(pending[p] for p in cluster))
        else:  # the same-photo rule starved it: give its faces back
            for p in cluster:
                assigned[p] = False
    return clusters


def _grow(seed: int, near: list[list[tuple[float, int]]], core: list[bool], assigned: list[bool],
          media: list[int]) -> list[int]:
    """Breadth-first expansion from a core face; only cores extend the cluster, one face per photo."""
    cluster, queue, photos = [seed], [seed], {media[seed]}
    assigned[seed] = True
    while queue:
        current = queue.pop(0)
        for _, j in near[current]:
            if assigned[j] or media[j] in photos:
                continue
            assigned[j] = True
            photos.add(media[j])
            cluster.append(j)
            if core[j]:
                queue.append(j)
    return cluster


def _reused_person(faces: list[FaceRef], members: list[int], used: set[int]) -> int | None:
    """The unlocked person most of these faces had before a re-cluster, if no other cluster took it."""
    previous = Counter(faces[i].person_id for i in members if faces[i].person_id is not None)
    for person, _ in previous.most_common():
        if person not in used:
            return person
    return None
