import CHDF5
import CPNG
import CZlib

/// Versions of the storage libraries actually loaded (for `loom doctor`).
public enum StorageNative {
    /// HDF5's runtime version.
    public static var hdf5Version: String {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        H5get_libversion(&major, &minor, &release)
        return "\(major).\(minor).\(release)"
    }

    /// libpng's runtime version.
    public static var pngVersion: String { String(cString: png_get_libpng_ver(nil)) }

    /// libpng's version in the headers Loom was built against.
    public static var pngHeaderVersion: String { String(cString: loom_png_header_version()) }

    /// zlib's runtime version.
    public static var zlibVersion: String { String(cString: CZlib.zlibVersion()) }
}
