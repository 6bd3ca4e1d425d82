/// The one collective the lower layers need (synchronised batch norm sums its statistics
/// over all replicas). LoomDistributed's communicator provides it; LoomNN only sees this.
public protocol ReplicaReducer: AnyObject {
    /// Sums `values` element-wise over all replicas, in place.
    func sumAcrossReplicas(_ values: inout [Double]) throws
}
