"""Minimum-cost assignment (Hungarian algorithm) for the tracker, in numpy.

Tracks and detections per frame are few (tens) and mostly do not compete, so the
O(n³) solver runs only on the components where they do; it spares a SciPy dependency
for one function.
"""

from __future__ import annotations

import numpy as np


def _hungarian_square(cost: np.ndarray) -> np.ndarray:
    """Column assigned to each row of a square cost matrix (Jonker–Volgenant style potentials)."""
    n = cost.shape[0]
    u = np.zeros(n + 1)
    v = np.zeros(n + 1)
    p = np.zeros(n + 1, dtype=np.int64)  # p[j]: row matched to column j (1-based, 0 = none)
    way = np.zeros(n + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            used_idx = np.nonzero(used)[0]
            u[p[used_idx]] += delta
            v[used_idx] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    rows = np.zeros(n, dtype=np.int64)
    for j in range(1, n + 1):
        if p[j]:
            rows[p[j] - 1] = j - 1
    return rows


def _components(valid: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """Connected components (rows, columns) of the bipartite graph of allowed pairs."""
    rows, cols = valid.shape
    seen_r = np.zeros(rows, dtype=bool)
    seen_c = np.zeros(cols, dtype=bool)
    out: list[tuple[list[int], list[int]]] = []
    for start in range(rows):
        if seen_r[start] or not valid[start].any():
            continue
        comp_r, comp_c, stack = [start], [], [start]
        seen_r[start] = True
        while stack:
            r = stack.pop()
            for c in np.nonzero(valid[r] & ~seen_c)[0]:
                seen_c[c] = True
                comp_c.append(int(c))
                for r2 in np.nonzero(valid[:, c] & ~seen_r)[0]:
                    seen_r[r2] = True
                    comp_r.append(int(r2))
                    stack.append(int(r2))
        out.append((comp_r, comp_c))
    return out


def _solve(cost: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Matches of one component, by the augmented square problem."""
    rows, cols = cost.shape
    n = rows + cols
    inf = 1e9
    aug = np.full((n, n), inf, dtype=np.float64)
    aug[:rows, :cols] = np.where(cost <= threshold, cost, inf)
    aug[:rows, cols:][np.eye(rows, dtype=bool)] = threshold / 2  # row r left unmatched
    aug[rows:, :cols][np.eye(cols, dtype=bool)] = threshold / 2  # column c left unmatched
    aug[rows:, cols:] = 0.0  # dummy pairs
    assigned = _hungarian_square(aug)
    return [(r, int(assigned[r])) for r in range(rows) if assigned[r] < cols and cost[r, assigned[r]] <= threshold]


def linear_assignment(cost: np.ndarray, threshold: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Optimal matches with cost ≤ ``threshold``; (matches, unmatched rows, unmatched columns).

    Same objective as ``lap.lapjv(extend_cost=True, cost_limit=threshold)`` that ByteTrack
    uses: leaving a row or a column unmatched costs ``threshold / 2`` each, so a pair is
    matched only when that beats leaving both alone. The problem splits into independent
    components of the allowed-pair graph; most are a single pair (matched directly), so the
    O(n³) solver only runs where tracks actually compete.
    """
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    matches: list[tuple[int, int]] = []
    for comp_r, comp_c in _components(cost <= threshold):
        if len(comp_r) == 1 and len(comp_c) == 1:
            matches.append((comp_r[0], comp_c[0]))
            continue
        sub = cost[np.ix_(comp_r, comp_c)]
        matches += [(comp_r[r], comp_c[c]) for r, c in _solve(sub, threshold)]
    matches.sort()
    matched_rows = {r for r, _ in matches}
    matched_cols = {c for _, c in matches}
    return (
        matches,
        [r for r in range(rows) if r not in matched_rows],
        [c for c in range(cols) if c not in matched_cols],
    )
