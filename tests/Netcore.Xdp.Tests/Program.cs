using Netcore.Interop;
using Netcore.Threading;

namespace Netcore.Xdp.Tests;

/// <summary>
/// Entry point used only as a child process by tests that need "another process":
/// <c>dotnet Netcore.Xdp.Tests.dll xdp-pin-child NETNS IFNAME OBJECT LINKPIN MAPPIN</c> loads the
/// object, attaches xdp_count with a bpf_link inside NETNS, pins link and map, and exits.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 6 && args[0] == "xdp-pin-child")
        {
            using var obj = BpfObject.Load(args[3]);
            var (ns, ifname) = (args[1], args[2]);
            int ifindex = NetnsThread.Run(ns, () => (int)Libc.if_nametoindex(ifname));
            using var link = NetnsThread.Run(ns, () => obj.Program("xdp_count").AttachXdp(ifindex));
            link.Pin(args[4]);
            obj.Map("counters").Pin(args[5]);
            Console.WriteLine($"pinned link {link.GetInfo().Id}");
            return 0;
        }
        if (args.Length == 1 && args[0] == "perm-child")
        {
            // Run without privileges (setpriv --reuid nobody): bpf(2) must fail with the typed permission error.
            try
            {
                using var m = BpfMap.Create(new BpfMapSpec { Type = BpfMapType.Hash, KeySize = 4, ValueSize = 4, MaxEntries = 1, Name = "perm" });
                Console.WriteLine("created");
                return 1;
            }
            catch (BpfPermissionException e)
            {
                Console.WriteLine("BpfPermissionException: " + e.Message);
                return 0;
            }
        }
        Console.Error.WriteLine("test helper: xdp-pin-child NETNS IFNAME OBJECT LINKPIN MAPPIN");
        return 2;
    }
}
