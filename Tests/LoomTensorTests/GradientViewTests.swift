import Testing
import LoomTensor

/// Backward into gradient views (data parallelism's bucket views), in one process: for
/// loss = Σ w·x the gradient of w is x (closed form), so each rule of `GradientView` has an
/// exact expected value.
@Suite struct GradientViewTests {
    static let x: [Float] = [1, -2, 3.5, 0.25, -8, 6]

    /// A leaf w of 6 elements whose gradient view is elements 2..<8 of a 10-element bucket.
    func leafWithView(scale: Float) -> (w: Tensor, bucket: Tensor, view: GradientView) {
        let bucket = Tensor([Float](repeating: 7, count: 10), shape: [10])
        let view = GradientView(tensor: Tensor(shape: [2, 3], storage: Storage(viewing: bucket.storage, offset: 2, count: 6)),
                                scale: scale)
        let w = Tensor.zeros([2, 3], requiresGrad: true)
        w.gradientView = view
        return (w, bucket, view)
    }

    func backward(_ w: Tensor, times factor: Float = 1, createGraph: Bool = false) {
        (w * Tensor(Self.x.map { $0 * factor }, shape: [2, 3])).sum().backward(createGraph: createGraph)
    }

    @Test func storageViewSharesAndKeepsItsBaseAlive() {
        var base: Storage? = Storage(count: 8)
        for i in 0..<8 { base!.data[i] = Float(i) }
        let view = Storage(viewing: base!, offset: 3, count: 4)
        let nested = Storage(viewing: view, offset: 1, count: 2)
        #expect(view.base === base && nested.base === base)
        base = nil  // only the views hold it now
        #expect(Array(UnsafeBufferPointer(start: view.data, count: 4)) == [3, 4, 5, 6])
        nested.data[0] = 40
        #expect(view.data[1] == 40)
    }

    @Test func backwardWritesTheScaledGradientIntoTheBucketAndAccumulatesThere() {
        let (w, bucket, view) = leafWithView(scale: 0.25)
        backward(w)
        #expect(w.grad === view.tensor)
        #expect(bucket.array == [7, 7] + Self.x.map { 0.25 * $0 } + [7, 7])  // only the view's range written
        backward(w, times: 3)
        #expect(view.tensor.array == Self.x.map { 0.25 * $0 + 0.25 * (3 * $0) })
        #expect(!view.holdsAverage)
    }

    @Test func anAverageIsScaledBackToAShareBeforeMoreIsAdded() {
        let (w, _, view) = leafWithView(scale: 0.5)
        backward(w)
        view.markAveraged()  // as after the all-reduce: say it now holds the average a = x/2
        backward(w, times: 2)
        // Old semantics: the next all-reduce sums a + 2x over ranks and scales by 1/2.
        #expect(view.tensor.array == Self.x.map { 0.5 * (0.5 * $0) + 0.5 * (2 * $0) })
        view.markAveraged()
        w.grad = nil  // zeroGrad: the next backward overwrites, whatever the view held
        backward(w)
        #expect(view.tensor.array == Self.x.map { 0.5 * $0 })
    }

    @Test func gradientsArrivingWhileTheBucketIsBusyWaitInLate() {
        let (w, _, view) = leafWithView(scale: 0.25)
        backward(w)
        view.isBusy = true
        let inFlight = view.tensor.array
        backward(w, times: 2)
        backward(w, times: -1)
        #expect(view.tensor.array == inFlight)
        #expect(w.grad === view.tensor)
        #expect(view.takeLate()?.array == Self.x.map { 0.25 * (2 * $0) + 0.25 * -$0 })
        #expect(view.takeLate() == nil)
    }

    @Test func aGradientTheUserSetStaysTheirsUntilTheShareIsPrepared() {
        let (w, bucket, view) = leafWithView(scale: 0.25)
        let mine = Tensor([Float](repeating: 1, count: 6), shape: [2, 3])
        w.grad = mine
        backward(w)
        #expect(w.grad === mine && mine.array == Self.x.map { 1 + $0 })
        #expect(bucket.array == [Float](repeating: 7, count: 10))
        view.prepareShare(of: w)
        #expect(w.grad === view.tensor && view.tensor.array == Self.x.map { 0.25 * (1 + $0) })
    }

    @Test func preparingASharePutsZerosForNoGradientAndScalesAnAverage() {
        let (w, _, view) = leafWithView(scale: 0.25)
        view.prepareShare(of: w)
        #expect(w.grad === view.tensor && view.tensor.array == [Float](repeating: 0, count: 6))
        backward(w)
        view.markAveraged()
        view.prepareShare(of: w)
        #expect(view.tensor.array == Self.x.map { 0.25 * (0.25 * $0) })
        view.prepareShare(of: w)  // a share already: unchanged
        #expect(view.tensor.array == Self.x.map { 0.25 * (0.25 * $0) })
    }

    @Test func createGraphLeavesTheBucketWithTheUnscaledSum() {
        let (w, _, view) = leafWithView(scale: 0.25)
        backward(w)
        backward(w, times: 2, createGraph: true)
        #expect(w.grad !== view.tensor)
        #expect(w.grad?.array == Self.x.map { 0.25 * $0 / 0.25 + 2 * $0 })
        view.prepareShare(of: w)
        #expect(view.tensor.array == Self.x.map { 0.25 * ($0 + 2 * $0) })
    }

    @Test func withoutAViewBackwardCopiesAndAddsAsBefore() {
        let w = Tensor.zeros([2, 3], requiresGrad: true)
        backward(w)
        backward(w, times: 2)
        #expect(w.grad?.array == Self.x.map { $0 + 2 * $0 })
    }
}
