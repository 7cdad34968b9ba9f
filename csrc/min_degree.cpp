// Approximate minimum degree (Amestoy, Davis & Duff, 1996), on the quotient graph.
//
// Eliminated nodes become "elements": the clique their elimination creates is stored once as the
// element's variable list instead of as fill edges, so memory stays O(E). Each step takes the
// (super)variable p of least approximate external degree, merges the elements around it into one
// new element L_p (absorbing them), prunes the variable lists L_p now covers, and bounds the
// degree of every variable i in L_p (all sizes weighted by supervariable size):
//   d_i = min(remaining - |i|, d_i + |L_p \ i|, |A_i| + |L_p \ i| + sum_e |L_e \ L_p|).
// Elements inside L_p are absorbed too (aggressive absorption), and variables of L_p with the
// same variable and element lists are merged into supervariables, eliminated together: without
// that, the late, dense steps of a 3D graph cost minutes at 10^6 nodes. When the remaining
// variables form a single clique they are emitted at once. The result is the postorder of the
// assembly tree (as SuiteSparse AMD returns it): same fill, and far better locality.
// The graph is first relabelled in breadth-first order so that the per-node state the
// elimination touches stays in cache; lists are kept flat in the input's row slots (no
// allocation per variable). Ties between equal degrees may break differently from the input
// labels, the algorithm is the same.
#include "min_degree.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <new>
#include <stdexcept>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace graphattn {
namespace {

// Allocator for the per-node arrays: large ones are 2 MiB aligned and marked for transparent
// huge pages (where the kernel supports it), since the elimination reads them at random and
// 4 KiB pages make that a TLB miss per lookup at 10^6 nodes (about 20% of the run time).
template <class T>
struct HugePageAllocator {
    using value_type = T;
    HugePageAllocator() = default;
    template <class U>
    HugePageAllocator(const HugePageAllocator<U>&) {}

    T* allocate(size_t count) {
        const size_t bytes = count * sizeof(T);
        constexpr size_t huge = size_t(2) << 20;
        void* p = nullptr;
        if (bytes >= 2 * huge) {
            p = std::aligned_alloc(huge, (bytes + huge - 1) / huge * huge);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
            if (p) madvise(p, (bytes + huge - 1) / huge * huge, MADV_HUGEPAGE);
#endif
        } else {
            p = std::malloc(bytes > 0 ? bytes : 1);
        }
        if (!p) throw std::bad_alloc();
        return static_cast<T*>(p);
    }
    void deallocate(T* p, size_t) { std::free(p); }
    template <class U>
    bool operator==(const HugePageAllocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const HugePageAllocator<U>&) const { return false; }
};

template <class T>
using Array = std::vector<T, HugePageAllocator<T>>;

// Doubly linked lists of variables per degree, to pop a minimum-degree variable quickly. A
// variable's links and degree sit together (int32: n < 2^31), one cache line per update.
class DegreeBuckets {
public:
    explicit DegreeBuckets(int64_t n) : head_(n + 1, -1), node_(n, Node{-1, -1, 0}) {}

    void insert(int64_t v, int64_t d) {
        Node& x = node_[v];
        x.degree = static_cast<int32_t>(d);
        x.next = head_[d];
        x.prev = -1;
        if (head_[d] >= 0) node_[head_[d]].prev = static_cast<int32_t>(v);
        head_[d] = static_cast<int32_t>(v);
        if (d < min_) min_ = d;
    }

    void remove(int64_t v) {
        const Node& x = node_[v];
        if (x.prev >= 0) node_[x.prev].next = x.next;
        else head_[x.degree] = x.next;
        if (x.next >= 0) node_[x.next].prev = x.prev;
    }

    int64_t pop_min() {
        const int64_t v = head_[min_degree()];
        remove(v);
        return v;
    }

    int64_t degree(int64_t v) const { return node_[v].degree; }
    // Start loading what remove(v) will touch: v's entry, then (once that is in) its neighbours'.
    void prefetch(int64_t v) const { __builtin_prefetch(&node_[v], 1); }
    void prefetch_links(int64_t v) const {
        const Node& x = node_[v];
        if (x.prev >= 0) __builtin_prefetch(&node_[x.prev], 1);
        if (x.next >= 0) __builtin_prefetch(&node_[x.next], 1);
    }
    int64_t min_degree() {
        while (min_ + 1 < static_cast<int64_t>(head_.size()) && head_[min_] < 0) ++min_;
        return min_;
    }

private:
    struct Node { int32_t next, prev, degree; };
    Array<int32_t> head_;
    Array<Node> node_;
    int64_t min_ = 0;
};

// The minimum degree order of the graph with rows ptr/list (int32 ids), in its own labels.
std::vector<int64_t> min_degree_local(const Array<int64_t>& ptr, Array<int32_t> list, int64_t n) {
    // int32 ids: half the memory traffic of the lists that dominate the run time.
    // A variable's lists live in one flat array, in the slot of its original row: its variables
    // A_i at list[start[i] .. + nv[i]), then its elements E_i (ne[i] of them). They never
    // outgrow that slot: i joins a new element p only when p leaves A_i or an element of E_i is
    // absorbed into p, so |A_i| + |E_i| never exceeds the original degree (as in AMD's in-place
    // storage). No allocation per variable, and the lists stay where the input put them.
    Array<int64_t> start(ptr.begin(), ptr.end() - 1);
    Array<int32_t> nv(n), ne(n, 0);
    auto vars_begin = [&](int64_t i) { return list.data() + start[i]; };
    auto vars_end = [&](int64_t i) { return list.data() + start[i] + nv[i]; };
    auto elems_begin = [&](int64_t i) { return list.data() + start[i] + nv[i]; };
    auto elems_end = [&](int64_t i) { return list.data() + start[i] + nv[i] + ne[i]; };
    Array<std::vector<int32_t>> element_vars(n);
    std::vector<int32_t> lp;  // L_p of the current step, copied to element_vars[p] at its exact size
    // weight: size of the supervariable a variable represents (0 once merged into another);
    // members: the variables merged into it, emitted right after it (a linked list: member_next
    // from the principal variable, member_tail its last entry).
    // Per-node state read together, packed so that one lookup is one cache line: a variable's
    // weight and mark; an element's w (below), stamp, weight (|L_e| weighted) and absorbed flag.
    struct VarState { int32_t weight, mark; };
    struct ElemState { int32_t w, w_mark, weight, absorbed; };
    Array<VarState> vs(n, VarState{1, -1});
    Array<ElemState> es(n, ElemState{0, -1, 0, 0});
    Array<int32_t> member_next(n, -1), member_tail(n);
    for (int64_t v = 0; v < n; ++v) member_tail[v] = static_cast<int32_t>(v);
    // int32 stamps (reset before they could overflow), weights and links: less to keep in cache
    Array<int32_t> same(n, -1);
    Array<int64_t> hash(n, 0);
    Array<int32_t> hash_head(n, -1), hash_next(n, -1), var_weight(n, 0);
    DegreeBuckets buckets(n);
    for (int64_t v = 0; v < n; ++v) {
        nv[v] = static_cast<int32_t>(ptr[v + 1] - ptr[v]);
        buckets.insert(v, static_cast<int64_t>(nv[v]));
    }
    // parent[e]: the element that absorbed element e (the assembly tree), -1 for roots.
    Array<int64_t> parent(n, -1), pivots, tail;
    pivots.reserve(n);
    // weight 0: merged into a supervariable or eliminated (one array read per liveness test)
    auto live = [&](int64_t u) { return vs[u].weight > 0; };
    int64_t remaining = n;
    int64_t stamp = 0;
    while (remaining > 0) {
        if (buckets.min_degree() >= remaining - 1) {
            // Every remaining variable is adjacent to every other: any order is a minimum one.
            for (int64_t v = 0; v < n; ++v) if (live(v)) tail.push_back(v);
            break;
        }
        if (stamp > std::numeric_limits<int32_t>::max() - n - 2) {  // a step takes at most n + 1 stamps
            for (VarState& x : vs) x.mark = -1;
            for (ElemState& x : es) x.w_mark = -1;
            std::fill(same.begin(), same.end(), -1);
            stamp = 0;
        }
        const int64_t p = buckets.pop_min();
        remaining -= vs[p].weight;
        vs[p].weight = 0;
        pivots.push_back(p);
        ++stamp;

        // L_p = (A_p ∪ union of L_e over e in E_p) minus p, live variables only.
        lp.clear();
        int64_t lp_weight = 0;
        vs[p].mark = stamp;
        auto take = [&](int64_t u) {
            if (live(u) && vs[u].mark != stamp) { vs[u].mark = stamp; lp.push_back(static_cast<int32_t>(u)); lp_weight += vs[u].weight; }
        };
        for (const int32_t* u = vars_begin(p); u != vars_end(p); ++u) take(*u);
        for (const int32_t* pe = elems_begin(p); pe != elems_end(p); ++pe) {
            const int64_t e = *pe;
            if (es[e].absorbed) continue;
            for (int64_t u : element_vars[e]) take(u);
            es[e].absorbed = 1;
            parent[e] = p;
            std::vector<int32_t>().swap(element_vars[e]);
        }
        es[p].weight = lp_weight;
        element_vars[p].assign(lp.begin(), lp.end());
        nv[p] = 0;
        ne[p] = 0;

        // Prune: inside L_p, element p covers the variable–variable edges; drop absorbed elements.
        // The same pass sums what the degree update needs from A_i (|A_i| weighted, and the ids
        // for the supervariable hash: A_i is final now) and computes w[e] = weight of L_e \ L_p
        // for every element next to L_p (one walk over each list instead of three).
        const size_t lp_size = lp.size();
        for (size_t k = 0; k < lp_size; ++k) {
            // the lists and bucket links of the next variables are scattered: fetch them ahead
            if (k + 8 < lp_size) {
                const int64_t ahead = lp[k + 8];
                buckets.prefetch(ahead);
                __builtin_prefetch(&start[ahead]);
                __builtin_prefetch(&nv[ahead]);
                __builtin_prefetch(&ne[ahead]);
            }
            if (k + 4 < lp_size) {
                const int64_t ahead = lp[k + 4];
                buckets.prefetch_links(ahead);
                __builtin_prefetch(list.data() + start[ahead], 1);
                __builtin_prefetch(list.data() + start[ahead] + 16, 1);
            }
            if (k + 2 < lp_size) {
                const int64_t ahead = lp[k + 2];
                for (const int32_t* u = vars_begin(ahead); u != vars_end(ahead); ++u) __builtin_prefetch(&vs[*u]);
                for (const int32_t* e = elems_begin(ahead); e != elems_end(ahead); ++e) __builtin_prefetch(&es[*e], 1);
            }
            const int64_t i = lp[k];
            buckets.remove(i);
            // compact A_i, then E_i right behind it (both keep their order)
            int32_t* const base = vars_begin(i);
            int32_t out = 0;
            int64_t a_weight = 0, h = 0;
            for (int32_t k = 0; k < nv[i]; ++k) {
                const int32_t u = base[k];
                if (live(u) && vs[u].mark != stamp) { base[out++] = u; a_weight += vs[u].weight; h += u; }
            }
            const int32_t new_nv = out;
            const int64_t wi = vs[i].weight;
            for (int32_t k = nv[i]; k < nv[i] + ne[i]; ++k) {
                const int32_t e = base[k];
                if (es[e].absorbed) continue;
                base[out++] = e;
                if (es[e].w_mark != stamp) { es[e].w_mark = stamp; es[e].w = es[e].weight; }
                es[e].w -= wi;
            }
            nv[i] = new_nv;
            ne[i] = out - new_nv;
            hash[i] = h;
            var_weight[i] = a_weight;
        }
        for (int64_t i : lp) {
            int32_t* const ei = elems_begin(i);
            int64_t external = 0;
            int32_t keep = 0;
            int64_t h = p + hash[i];
            for (int32_t k = 0; k < ne[i]; ++k) {
                const int64_t e = ei[k];
                if (es[e].w <= 0) {  // L_e ⊆ L_p: e adds nothing beyond p (aggressive absorption)
                    if (!es[e].absorbed) { es[e].absorbed = 1; parent[e] = p; std::vector<int32_t>().swap(element_vars[e]); }
                    continue;
                }
                if (es[e].absorbed) continue;
                external += es[e].w;
                h += e;
                ei[keep++] = static_cast<int32_t>(e);
            }
            if (nv[i] + keep + 1 > ptr[i + 1] - ptr[i])
                throw std::logic_error("min_degree: a variable's lists outgrew its slot");
            ei[keep] = static_cast<int32_t>(p);
            ne[i] = keep + 1;
            hash[i] = h;
            const int64_t bound = var_weight[i] + (lp_weight - vs[i].weight) + external;
            const int64_t d = std::min({remaining - vs[i].weight, buckets.degree(i) + lp_weight - vs[i].weight, bound});
            buckets.insert(i, std::max<int64_t>(d, 0));
        }
        // Supervariables: variables of L_p with identical variable and element lists merge. Hash
        // buckets (linked through hash_next) keep this O(|L_p|) unless hashes collide.
        for (int64_t i : lp) {
            const int64_t b = static_cast<int64_t>(static_cast<uint64_t>(hash[i]) % static_cast<uint64_t>(n));
            hash_next[i] = hash_head[b];
            hash_head[b] = i;
        }
        for (int64_t i0 : lp) {
            const int64_t b = static_cast<int64_t>(static_cast<uint64_t>(hash[i0]) % static_cast<uint64_t>(n));
            int64_t first = hash_head[b];
            if (first < 0) continue;
            hash_head[b] = -1;  // this bucket is handled now
            if (hash_next[first] < 0) continue;  // a single variable: nothing to merge
            for (int64_t i = first; i >= 0; i = hash_next[i]) {
                if (vs[i].weight == 0) continue;
                ++stamp;  // mark i's lists (element and variable ids never coincide: one array)
                for (const int32_t* u = vars_begin(i); u != elems_end(i); ++u) same[*u] = stamp;
                for (int64_t j = hash_next[i]; j >= 0; j = hash_next[j]) {
                    if (vs[j].weight == 0 || hash[j] != hash[i] || nv[j] != nv[i] || ne[j] != ne[i]) continue;
                    bool equal = true;
                    for (const int32_t* u = vars_begin(j); u != elems_end(j); ++u) if (same[*u] != stamp) { equal = false; break; }
                    if (!equal) continue;
                    // merge j into i
                    buckets.remove(j);
                    buckets.remove(i);
                    const int64_t d = std::max<int64_t>(buckets.degree(i) - vs[j].weight, 0);
                    vs[i].weight += vs[j].weight;
                    vs[j].weight = 0;
                    member_next[member_tail[i]] = static_cast<int32_t>(j);
                    member_tail[i] = member_tail[j];
                    nv[j] = 0;
                    ne[j] = 0;
                    buckets.insert(i, d);
                }
            }
        }
    }
    // Postorder of the assembly tree (children before parents, subtrees contiguous): the same
    // fill as the elimination order, and each subtree's nodes end up next to each other.
    std::vector<int64_t> child_ptr(n + 1, 0), children(pivots.size());
    for (int64_t e : pivots) if (parent[e] >= 0) ++child_ptr[parent[e] + 1];
    for (int64_t v = 0; v < n; ++v) child_ptr[v + 1] += child_ptr[v];
    {
        std::vector<int64_t> fill(child_ptr.begin(), child_ptr.end() - 1);
        for (int64_t e : pivots) if (parent[e] >= 0) children[fill[parent[e]]++] = e;
    }
    std::vector<int64_t> order, stack, next_child(child_ptr.begin(), child_ptr.end() - 1);
    order.reserve(n);
    auto emit = [&](int64_t v) {
        order.push_back(v);
        for (int64_t m = member_next[v]; m >= 0; m = member_next[m]) order.push_back(m);
    };
    for (int64_t root : pivots) {
        if (parent[root] >= 0) continue;
        stack.push_back(root);
        while (!stack.empty()) {
            const int64_t v = stack.back();
            if (next_child[v] < child_ptr[v + 1]) {
                stack.push_back(children[next_child[v]++]);
            } else {
                stack.pop_back();
                emit(v);
            }
        }
    }
    for (int64_t v : tail) emit(v);
    return order;
}

}  // namespace

std::vector<int64_t> min_degree(const int64_t* ptr, const int64_t* nbrs, int64_t n) {
    // Relabel in breadth-first order first: neighbours get nearby ids, so the per-node arrays
    // the elimination touches at random stay in cache (input ids are often in no useful order,
    // and then each lookup is a cache miss). The order is mapped back at the end. Row i of the
    // relabelled graph is written when the search reaches it: its neighbours all have ids then.
    Array<int32_t> old_of_new, new_of_old(n, -1);
    old_of_new.reserve(n);
    Array<int64_t> local_ptr(n + 1, 0);
    Array<int32_t> local_list(ptr[n]);
    int64_t out = 0;
    for (int64_t root = 0; root < n; ++root) {
        if (new_of_old[root] >= 0) continue;
        size_t head = old_of_new.size();
        new_of_old[root] = static_cast<int32_t>(head);
        old_of_new.push_back(static_cast<int32_t>(root));
        for (; head < old_of_new.size(); ++head) {
            const int64_t v = old_of_new[head];
            for (int64_t k = ptr[v]; k < ptr[v + 1]; ++k) {
                const int64_t u = nbrs[k];
                if (new_of_old[u] < 0) {
                    new_of_old[u] = static_cast<int32_t>(old_of_new.size());
                    old_of_new.push_back(static_cast<int32_t>(u));
                }
                local_list[out++] = new_of_old[u];
            }
            local_ptr[head + 1] = out;
        }
    }
    Array<int32_t>().swap(new_of_old);
    std::vector<int64_t> order = min_degree_local(local_ptr, std::move(local_list), n);
    for (int64_t& v : order) v = old_of_new[v];
    return order;
}

}  // namespace graphattn
