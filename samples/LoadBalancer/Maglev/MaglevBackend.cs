namespace Netcore.LoadBalancer.Maglev;

/// <summary>
/// A backend as the Maglev table builder sees it: a stable name and a weight.
/// </summary>
/// <param name="Name">
/// Stable identity of the backend (for example "10.0.0.7:80" or a host name). The permutation of
/// the backend is derived from this name only, so every load-balancer node that knows the same
/// names and weights computes the same table. Compared ordinally; must be unique in a table.
/// </param>
/// <param name="Weight">
/// Relative share of the table. 0 excludes the backend (failed or drained); it then owns no entry.
/// </param>
public readonly record struct MaglevBackend(string Name, int Weight);
