"""A provable lower bound on the tiles of *any* ordering: how far the orderings are from possible.

Tiles depend only on the grouping of nodes into blocks of B (GUIDE §5). For one grouping let Q be
the block quotient of the undirected graph U (blocks a != b joined when an edge joins them) and
Q_M the quotient of the mutual graph M (pairs with edges both ways). Then

    tiles = diagonal tiles + off-diagonal tiles
          >= (blocks holding an internal edge or self-loop) + |E(Q)| + |E(Q_M)|,

since a block pair joined by any edge has at least one of its two tiles and a pair joined by a
mutual edge has both. Three facts bound the right side for every grouping at once:

1. Connectivity. The blocks holding a connected component C of U are connected in Q, and a
   component of Q with k blocks has at least k - 1 edges; packing components into shared blocks
   saves nothing (ceil(x + y) - 1 >= (ceil x - 1) + (ceil y - 1)). So
   |E(Q)| >= A_U = sum over components of U of (ceil(|C| / B) - 1), and the same for M.
2. Diagonals. Every block holds an internal edge unless it is an independent set. Independent
   blocks really do help on some graphs: a path split into blocks of its odd and of its even
   nodes has 2 (nb - 1) tiles, against 3 nb - 2 for contiguous runs (tests/test_order_floor.py).
3. Independent blocks are expensive where neighbourhoods are cliquish. If S is an independent
   block, each neighbour w of S touches at most alpha(w) nodes of S, alpha(w) being the
   independence number of U restricted to N(w) (exact by branch and bound for neighbourhoods of
   up to 62 nodes, else bounded above by a greedy clique partition). Counting the edges leaving
   S, |N(S)| >= m, the fewest nodes whose alpha values (largest first) sum to the B smallest
   degrees; N(S) spans at least t0 = ceil(m / B) other blocks. So
   the sum of Q degrees is at least x t0 + (nb - x - small) with x independent full blocks
   ("small": components of at most B nodes, which can fill a block on their own).

The floor is the minimum over x of (nb - x) + max(A_U, half that degree sum) + the same for M.
With t0 <= 2 (meshes, bipartite graphs) it is about 2 tiles per block row; it grows towards
nb + 2 (nb - 1), about 3 per row, as t0 grows (k = 16 k-NN graphs: t0 = 3-5, 2.3-2.7 per row). Graphs with
isolated nodes (which can pad blocks) get only the connectivity part plus the self-loop blocks.

Cost: O(E) for the components plus O(sum of degree^2) and a small branch and bound per node for
the independence numbers: ~1 s at 100k and 6-12 s at 1M nodes with k = 16 on a 2-core CPU. It
is a measuring tool, not part of ``auto``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_block_size, check_edge_index, check_num_nodes
from ._numba import njit, prange
from .adjacency import Adjacency, _transpose
from .tiles import InEdges

# Neighbourhoods of at most this many nodes get their exact independence number (int64 bitmasks);
# the search gives up after MAX_STEPS branches and keeps the greedy clique bound (still valid).
MAX_EXACT_SET = 62
MAX_STEPS = 20_000
# Larger sets (hubs) skip the clique partition, whose d x d table would not fit, and use alpha <= d.
MAX_CLIQUE_SET = 1024


@dataclass(frozen=True)
class TileFloor:
    """A lower bound on the non-empty tiles of every ordering of one graph (see ``floor.py``).

    Attributes:
        tiles: the bound itself.
        num_blocks: ceil(N / B).
        connectivity: the off-diagonal part alone, A_U + A_M (spanning forests of Q and Q_M).
        min_neighbour_blocks: t0, the fewest other blocks an independent full block can touch
            (0 when the diagonal argument does not apply, e.g. with isolated nodes).
        independent_blocks: the number of independent blocks at which the bound is attained.
    """

    tiles: int
    num_blocks: int
    connectivity: int
    min_neighbour_blocks: int
    independent_blocks: int

    @property
    def tiles_per_block_row(self) -> float:
        """The bound divided by the number of blocks."""
        return self.tiles / self.num_blocks if self.num_blocks else 0.0


@njit(cache=True, nogil=True)
def _find(parent, v):
    root = v
    while parent[root] != root:
        root = parent[root]
    while parent[v] != root:  # path compression
        parent[v], v = root, parent[v]
    return root


@njit(cache=True, nogil=True)
def _component_sizes(ptr, nbrs, n):
    """Sizes of the connected components of an undirected CSR (union-find, union by index)."""
    parent = np.arange(n)
    for v in range(n):
        for e in range(ptr[v], ptr[v + 1]):
            a, b = _find(parent, v), _find(parent, nbrs[e])
            if a != b:
                if a < b:
                    parent[b] = a
                else:
                    parent[a] = b
    size = np.zeros(n, np.int64)
    for v in range(n):
        size[_find(parent, v)] += 1
    return size[size > 0]


@njit(cache=True, nogil=True, parallel=True)
def _mutual_rows(in_ptr, in_src, out_ptr, out_dst, n, ptr, rows, fill_pass):
    """Rows of the mutual graph M: the u != v with edges u -> v and v -> u (in(v) ∩ out(v)), with a
    stamp per node, so a hub's row is scanned once, not once per neighbour. The count pass (fill_pass
    False) writes row lengths to ptr[1:]; the fill pass writes the rows at ptr."""
    num_chunks = min(8, max(n, 1))
    for chunk in prange(num_chunks):
        into = np.full(n, -1, np.int64)  # into[u] == v: u -> v is an edge
        seen = np.full(n, -1, np.int64)  # seen[u] == v: u is already in v's row
        for v in range(chunk * n // num_chunks, (chunk + 1) * n // num_chunks):
            for e in range(in_ptr[v], in_ptr[v + 1]):
                into[in_src[e]] = v
            k = ptr[v] if fill_pass else 0
            for e in range(out_ptr[v], out_ptr[v + 1]):
                u = out_dst[e]
                if u != v and into[u] == v and seen[u] != v:
                    seen[u] = v
                    if fill_pass:
                        rows[k] = u
                    k += 1
            if not fill_pass:
                ptr[v + 1] = k


def _mutual_csr(in_edges: InEdges):
    """(ptr, nbrs) of the mutual graph, O(E)."""
    n = in_edges.num_nodes
    out_ptr, out_dst = _transpose(in_edges.ptr, in_edges.src, n)
    ptr = np.zeros(n + 1, np.int64)
    _mutual_rows(in_edges.ptr, in_edges.src, out_ptr, out_dst, n, ptr, in_edges.src[:0], False)
    np.cumsum(ptr, out=ptr)
    rows = np.empty(int(ptr[-1]), in_edges.src.dtype)
    _mutual_rows(in_edges.ptr, in_edges.src, out_ptr, out_dst, n, ptr, rows, True)
    return ptr, rows


@njit(cache=True, nogil=True, inline="always")
def _popcount(x):
    count = 0
    while x:
        x &= x - 1
        count += 1
    return count


@njit(cache=True, nogil=True, inline="always")
def _lowest_index(x):
    index = 0
    while not (x >> index) & 1:
        index += 1
    return index


@njit(cache=True, nogil=True)
def _clique_cover_bound(adj, rest):
    """Greedy clique partition of the vertex set ``rest`` (bitmask): bounds its independence number."""
    cliques = 0
    while rest:
        v = _lowest_index(rest)
        clique = np.int64(1) << v
        candidates = adj[v] & rest
        while candidates:
            u = _lowest_index(candidates)
            clique |= np.int64(1) << u
            candidates &= adj[u]
        rest &= ~clique
        cliques += 1
    return cliques


@njit(cache=True, nogil=True)
def _independence_number(adj, d, upper, max_steps):
    """Exact independence number of a graph on d <= 62 vertices (adjacency bitmasks), by branch and
    bound: every maximal independent set holds the lowest-degree vertex v or one of its neighbours.
    Returns ``upper`` (a known bound) if it runs out of ``max_steps``."""
    full = (np.int64(1) << d) - 1
    stack_sets = np.empty(d * d + 1, np.int64)
    stack_sizes = np.empty(d * d + 1, np.int64)
    stack_sets[0], stack_sizes[0] = full, 0
    top, best, steps = 1, 0, 0
    while top:
        top -= 1
        rest, size = stack_sets[top], stack_sizes[top]
        if rest == 0:
            best = max(best, size)
            if best >= upper:
                return best
            continue
        steps += 1
        if steps > max_steps:
            return upper
        if size + _clique_cover_bound(adj, rest) <= best:
            continue
        v, v_degree = -1, d + 1
        scan = rest
        while scan:
            u = _lowest_index(scan)
            scan &= scan - 1
            degree = _popcount(adj[u] & rest)
            if degree < v_degree:
                v, v_degree = u, degree
        branch = (adj[v] & rest) | (np.int64(1) << v)
        while branch:
            u = _lowest_index(branch)
            branch &= branch - 1
            stack_sets[top] = rest & ~(adj[u] | (np.int64(1) << u))
            stack_sizes[top] = size + 1
            top += 1
    return best


@njit(cache=True, nogil=True, parallel=True)
def _independence_bounds(ptr, nbrs, set_ptr, set_nbrs, n, max_steps):
    """For each node w, an upper bound on the independence number of U restricted to
    set(w) = set_nbrs[set_ptr[w]:set_ptr[w+1]]: exact (branch and bound on bitmasks) for sets of at
    most MAX_EXACT_SET nodes within ``max_steps``, else the number of cliques of a greedy clique
    partition (an independent set takes at most one node of each clique)."""
    alpha = np.zeros(n, np.int64)
    max_set = 0
    for w in range(n):
        max_set = max(max_set, set_ptr[w + 1] - set_ptr[w])
    max_set = min(max_set, MAX_CLIQUE_SET)
    num_chunks = 8
    for chunk in prange(num_chunks):
        local = np.full(n, -1, np.int64)  # node -> index inside the current set, stamped by w
        owner = np.full(n, -1, np.int64)
        adj = np.zeros((max_set, max_set), np.bool_)
        assigned = np.zeros(max_set, np.bool_)
        clique = np.empty(max_set, np.int64)
        masks = np.zeros(MAX_EXACT_SET, np.int64)
        for w in range(chunk * n // num_chunks, (chunk + 1) * n // num_chunks):
            lo, d = set_ptr[w], set_ptr[w + 1] - set_ptr[w]
            if d == 0:
                continue
            if d > MAX_CLIQUE_SET:  # a hub: its set size bounds its independence number
                alpha[w] = d
                continue
            for i in range(d):
                local[set_nbrs[lo + i]] = i
                owner[set_nbrs[lo + i]] = w
                assigned[i] = False
                for j in range(d):
                    adj[i, j] = False
            for i in range(d):
                u = set_nbrs[lo + i]
                if ptr[u + 1] - ptr[u] > 4 * d + 64:
                    # A hub in the set: its edges to the others are marked from their side (U is
                    # symmetric); between two hubs an edge may go unmarked, which only loosens
                    # (never invalidates) the bound. Keeps a star's leaves from scanning the hub.
                    continue
                for e in range(ptr[u], ptr[u + 1]):
                    y = nbrs[e]
                    if owner[y] == w:
                        adj[i, local[y]] = True
                        adj[local[y], i] = True
            if d <= MAX_EXACT_SET:
                for i in range(d):
                    bits = np.int64(0)
                    for j in range(d):
                        if adj[i, j] and i != j:
                            bits |= np.int64(1) << j
                    masks[i] = bits
                upper = _clique_cover_bound(masks, (np.int64(1) << d) - 1)
                alpha[w] = _independence_number(masks, d, upper, max_steps)
                continue
            cliques = 0
            for i in range(d):
                if assigned[i]:
                    continue
                cliques += 1
                assigned[i] = True
                size = 1
                clique[0] = i
                for j in range(i + 1, d):
                    if assigned[j]:
                        continue
                    joins = True
                    for c in range(size):
                        if not adj[j, clique[c]]:
                            joins = False
                            break
                    if joins:
                        assigned[j] = True
                        clique[size] = j
                        size += 1
            alpha[w] = cliques
    return alpha


def _min_neighbour_blocks(degree: np.ndarray, alpha: np.ndarray, block_size: int) -> int:
    """t0: the fewest other blocks the neighbourhood of an independent block of B nodes spans."""
    if degree.shape[0] < block_size:
        return 0
    leaving = int(np.partition(degree, block_size - 1)[:block_size].sum())  # edges leaving S, at least
    if leaving == 0:
        return 0
    reach = np.cumsum(np.sort(alpha)[::-1])
    m = int(np.searchsorted(reach, leaving)) + 1  # fewest neighbours whose alphas can absorb them
    return math.ceil(m / block_size)


def _spanning_edges(sizes: np.ndarray, block_size: int) -> int:
    return int((-(-sizes // block_size) - 1).sum())


def floor_of(in_edges: InEdges, block_size: int) -> TileFloor:
    """The tile floor of a graph given as in-edges (see the module docstring for the argument)."""
    n = in_edges.num_nodes
    num_blocks = -(-n // block_size)
    if n == 0 or in_edges.num_edges == 0:
        return TileFloor(0, num_blocks, 0, 0, 0)
    targets = in_edges.targets()
    loop_nodes = np.zeros(n, np.bool_)
    loop_nodes[targets[in_edges.src == targets]] = True
    num_loop_blocks = -(-int(loop_nodes.sum()) // block_size)

    u = Adjacency(in_edges)
    m_ptr, m_nbrs = _mutual_csr(in_edges)
    u_degree, m_degree = np.diff(u.ptr), np.diff(m_ptr)
    u_sizes = _component_sizes(u.ptr, u.nbrs, n)
    m_sizes = _component_sizes(m_ptr, m_nbrs, n)
    span_u, span_m = _spanning_edges(u_sizes, block_size), _spanning_edges(m_sizes, block_size)
    connectivity = span_u + span_m
    isolated = bool(((u_degree == 0) & ~loop_nodes).any())
    if isolated:
        # Isolated nodes can pad blocks, so the diagonal argument does not hold: self-loops only.
        return TileFloor(connectivity + num_loop_blocks, num_blocks, connectivity, 0, 0)

    t0_u = _min_neighbour_blocks(u_degree, _independence_bounds(u.ptr, u.nbrs, u.ptr, u.nbrs, n, MAX_STEPS), block_size)
    # An independent block is independent in U, so U's cliques also bound how many of its nodes a
    # mutual neighbour can touch.
    t0_m = _min_neighbour_blocks(m_degree, _independence_bounds(u.ptr, u.nbrs, m_ptr, m_nbrs, n, MAX_STEPS), block_size)
    partial = 1 if n % block_size else 0  # the last, short block may be independent with any degree
    full_blocks = num_blocks - partial
    max_independent = max(0, min(full_blocks, num_blocks - num_loop_blocks))
    x = np.arange(max_independent + 1, dtype=np.int64)
    diagonal = np.maximum(num_blocks - x - partial, num_loop_blocks)
    # Q degrees: >= t0 for an independent block, >= 1 for the others unless a block is a whole
    # component of Q on its own (only possible for components of at most B nodes).
    small_u = int((u_sizes <= block_size).sum())
    small_m = int((m_sizes <= block_size).sum())
    degree_sum_u = x * t0_u + np.maximum(0, num_blocks - x - small_u - partial)
    degree_sum_m = x * t0_m + np.maximum(0, num_blocks - x - small_m - partial)
    total = (diagonal + np.maximum(span_u, -(-degree_sum_u // 2)) + np.maximum(span_m, -(-degree_sum_m // 2)))
    best = int(np.argmin(total))
    return TileFloor(int(total[best]), num_blocks, connectivity, int(t0_u), int(best))


def tile_floor(edge_index: torch.Tensor, num_nodes: int | None = None, block_size: int = 64) -> TileFloor:
    """A lower bound on ``count_tiles`` under every possible ordering of this graph.

    No permutation of the nodes gives fewer non-empty ``block_size``² tiles than
    ``tile_floor(...).tiles``. The argument (connectivity of the block quotient, and what a block
    without internal edges costs) is in ``graphattn/ordering/floor.py``; use it to see how far an
    ordering is from what is possible.

    Args:
        edge_index: [2, E] integer edges (row 0 source, row 1 target).
        num_nodes: N; inferred from the largest index if omitted.
        block_size: tile size B, a power of two in [16, 256].
    """
    if num_nodes is not None:
        num_nodes = check_num_nodes(num_nodes)
    edge_index, num_nodes = check_edge_index(edge_index, num_nodes)
    block_size = check_block_size(block_size)
    ei = edge_index.cpu().numpy()
    return floor_of(InEdges(ei[0], ei[1], num_nodes), block_size)
