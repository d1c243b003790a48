namespace Netcore.Scheduler.Scheduling;

/// <summary>
/// Weighted fair share across tenants (stride scheduling, Waldspurger and Weihl 1995), priorities
/// within a tenant. Each tenant has a virtual time ("pass"); the backlogged tenant with the smallest
/// pass is served next, and serving it advances its pass by cost / weight. So among tenants that are
/// all backlogged, service (in cost units) is proportional to weight. A tenant that becomes backlogged
/// again starts at the current virtual time (the smallest pass among backlogged tenants), so idle time
/// is not banked as credit and cannot starve the others later; every backlogged tenant's pass is
/// eventually the smallest, so none starves either. Within a tenant items leave by priority (higher
/// first), then in arrival order. When no tenant is backlogged a new busy period starts and a tenant
/// that becomes backlogged is levelled up to the largest pass: service a tenant got while nobody else
/// was waiting (warming up alone, say) is not held against it later (start-time fair queueing resets
/// the system virtual time the same way at the end of a busy period). Not thread-safe: the scheduler
/// holds its lock around every call.
/// </summary>
/// <typeparam name="T">The queued item (a job id).</typeparam>
internal sealed class FairShareQueue<T> where T : notnull
{
    private sealed class Tenant(string name)
    {
        public string Name { get; } = name;
        public int Weight { get; set; } = 1;
        public double Pass { get; set; }
        public SortedSet<(int NegPriority, long Seq, T Item)> Items { get; } = new(EntryComparer.Instance);
    }

    private sealed class EntryComparer : IComparer<(int NegPriority, long Seq, T Item)>
    {
        public static readonly EntryComparer Instance = new();

        public int Compare((int NegPriority, long Seq, T Item) x, (int NegPriority, long Seq, T Item) y)
        {
            int c = x.NegPriority.CompareTo(y.NegPriority);
            return c != 0 ? c : x.Seq.CompareTo(y.Seq);
        }
    }

    private readonly Dictionary<string, Tenant> _tenants = new(StringComparer.Ordinal);
    private readonly Dictionary<T, (Tenant Tenant, int NegPriority, long Seq)> _where = [];
    private long _seq;

    /// <summary>Items queued over all tenants.</summary>
    public int Count => _where.Count;

    /// <summary>Sets a tenant's weight (1 or more), creating the tenant if needed.</summary>
    public void SetWeight(string tenant, int weight)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(weight, 1);
        Get(tenant).Weight = weight;
    }

    /// <summary>Forgets a tenant that has nothing queued (a deleted tenant); false when it has items or is unknown.</summary>
    public bool RemoveTenant(string tenant) =>
        _tenants.TryGetValue(tenant, out var t) && t.Items.Count == 0 && _tenants.Remove(tenant);

    /// <summary>Items queued for <paramref name="tenant"/>.</summary>
    public int CountOf(string tenant) => _tenants.TryGetValue(tenant, out var t) ? t.Items.Count : 0;

    /// <summary>A tenant's current virtual time (for tests and diagnostics).</summary>
    public double PassOf(string tenant) => _tenants.TryGetValue(tenant, out var t) ? t.Pass : 0;

    /// <summary>Queues <paramref name="item"/> for <paramref name="tenant"/> at <paramref name="priority"/> (higher leaves first).</summary>
    public void Enqueue(string tenant, T item, int priority)
    {
        Tenant t = Get(tenant);
        if (_where.ContainsKey(item))
            throw new InvalidOperationException($"item {item} is already queued");
        if (t.Items.Count == 0)
            t.Pass = Math.Max(t.Pass, CurrentVirtualTime()); // no credit for time spent idle
        long seq = ++_seq;
        t.Items.Add((-priority, seq, item));
        _where[item] = (t, -priority, seq);
    }

    /// <summary>Removes a queued item (a cancelled job); false when it is not queued.</summary>
    public bool Remove(T item)
    {
        if (!_where.Remove(item, out var w))
            return false;
        w.Tenant.Items.Remove((w.NegPriority, w.Seq, item));
        return true;
    }

    /// <summary>
    /// The tenant whose turn it is among those with queued items that <paramref name="eligible"/>
    /// accepts (e.g. a tenant at its worker limit is skipped), and its next item; false when none.
    /// </summary>
    public bool TryPeek(Func<string, bool> eligible, out string tenant, out T item)
    {
        ArgumentNullException.ThrowIfNull(eligible);
        Tenant? best = null;
        foreach (Tenant t in _tenants.Values)
        {
            if (t.Items.Count == 0 || !eligible(t.Name))
                continue;
            if (best is null || t.Pass < best.Pass || (t.Pass == best.Pass && string.CompareOrdinal(t.Name, best.Name) < 0))
                best = t;
        }
        if (best is null)
        {
            tenant = "";
            item = default!;
            return false;
        }
        tenant = best.Name;
        item = best.Items.Min.Item;
        return true;
    }

    /// <summary>Takes <paramref name="tenant"/>'s next item and charges it <paramref name="cost"/> (in the caller's unit, e.g. seconds).</summary>
    public T Dequeue(string tenant, double cost)
    {
        Tenant t = _tenants[tenant];
        var first = t.Items.Min;
        t.Items.Remove(first);
        _where.Remove(first.Item);
        t.Pass += cost / t.Weight;
        return first.Item;
    }

    /// <summary>
    /// Corrects a tenant's charge once the real cost is known (actual minus the estimate charged at
    /// <see cref="Dequeue"/>; may be negative).
    /// </summary>
    public void Charge(string tenant, double cost)
    {
        if (_tenants.TryGetValue(tenant, out var t))
            t.Pass = Math.Max(0, t.Pass + cost / t.Weight);
    }

    /// <summary>The smallest pass among backlogged tenants; in a new busy period (none backlogged) the largest pass of all.</summary>
    private double CurrentVirtualTime()
    {
        double min = double.MaxValue, max = 0;
        foreach (Tenant t in _tenants.Values)
        {
            if (t.Items.Count > 0 && t.Pass < min)
                min = t.Pass;
            max = Math.Max(max, t.Pass);
        }
        return min == double.MaxValue ? max : min;
    }

    private Tenant Get(string name)
    {
        if (!_tenants.TryGetValue(name, out var t))
        {
            t = new Tenant(name) { Pass = CurrentVirtualTime() };
            _tenants[name] = t;
        }
        return t;
    }
}
