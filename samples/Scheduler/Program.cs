namespace Netcore.Scheduler;

/// <summary>
/// Command line of the sample: <c>serve</c> runs the daemon, <c>worker</c> is the per-tenant worker
/// process the daemon starts, <c>lab</c> runs a short demonstration (see README.md).
/// </summary>
public static class Program
{
    /// <summary>Runs a command; returns the process exit code.</summary>
    public static async Task<int> Main(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        return args.FirstOrDefault() switch
        {
            "serve" => await Daemon.ServeCommand.RunAsync(args[1..], CancellationToken.None).ConfigureAwait(false),
            "worker" => Workers.WorkerMain.Run(args[1..]),
            "lab" => await Lab.LabCommand.RunAsync(args[1..], CancellationToken.None).ConfigureAwait(false),
            _ => Usage(),
        };
    }

    private static int Usage()
    {
        Console.Error.WriteLine("""
            usage: Netcore.Scheduler serve --db PATH [--api 127.0.0.1:PORT] [--token T] [options]
                     the scheduler daemon (README.md lists the options and the API)
                   Netcore.Scheduler lab [--keep-db PATH]
                     a short demonstration: two tenants (weights 1 and 3) running guest functions
                     compiled with gcc; prints shares, outcomes and cgroup CPU figures
                   Netcore.Scheduler worker ...
                     (started by the daemon, one per tenant worker)
            """);
        return 2;
    }
}
