/// Whole-tensor reductions (per-axis reductions live with their ops).

extension Tensor {
    /// Sum of all elements, as a scalar tensor.
    public func sum() -> Tensor {
        let out = Tensor.scalar(simdSum(data, count))
        let shape = self.shape
        return out.recorded("sum", [self]) { g, _ in [g.expanded(to: shape)] }
    }

    /// Mean of all elements, as a scalar tensor.
    public func mean() -> Tensor { sum() * (1 / Float(Swift.max(count, 1))) }
}
